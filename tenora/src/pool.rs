//! [`ManagedPool`]: a bb8 pool plus the last connection error it saw.
//!
//! bb8 opens connections in background tasks and, when they fail, only reports a timeout to the
//! caller of `get()`. Tenora keeps the last such error (via bb8's error sink) so a timeout says
//! *why* ("password authentication failed", "connection refused"), and opens the first
//! connection of every pool itself so a misconfiguration fails at once with the real cause.

use std::sync::{Arc, Mutex};

use bb8::ErrorSink;
use diesel_async::pooled_connection::PoolError;

use crate::backend::Backend;
use crate::config::PoolConfig;
use crate::error::{Error, Result};
use crate::tenora::PooledConn;

/// Remembers the last error of a pool's background connection attempts.
#[derive(Debug, Clone, Default)]
struct LastError(Arc<Mutex<Option<String>>>);

impl ErrorSink<PoolError> for LastError {
    fn sink(&self, error: PoolError) {
        tracing::warn!(error = %error, "pooled connection attempt failed");
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
    }

    fn boxed_clone(&self) -> Box<dyn ErrorSink<PoolError>> {
        Box::new(self.clone())
    }
}

/// A pool of one database's connections.
pub(crate) struct ManagedPool<B: Backend> {
    pool: bb8::Pool<B::Manager>,
    last_error: LastError,
}

impl<B: Backend> Clone for ManagedPool<B> {
    fn clone(&self) -> Self {
        ManagedPool {
            pool: self.pool.clone(),
            last_error: self.last_error.clone(),
        }
    }
}

impl<B: Backend> ManagedPool<B> {
    /// Builds a pool and seeds it with `first`, a connection the caller opened directly (so
    /// that connection errors surface immediately, with their cause).
    pub(crate) fn new(config: &PoolConfig, manager: B::Manager, first: B::Connection) -> Self {
        let last_error = LastError::default();
        let pool = bb8::Pool::builder()
            .max_size(config.max_size)
            .min_idle(config.min_idle)
            .connection_timeout(config.connection_timeout())
            .idle_timeout(config.idle_timeout())
            // A round trip per checkout costs far more than the cache lookup; broken
            // connections are still dropped when returned (diesel-async's `has_broken`).
            .test_on_check_out(false)
            .error_sink(Box::new(last_error.clone()))
            .build_unchecked(manager);
        // Only fails when the pool is full, which a new pool is not.
        let _ = pool.add(first);
        ManagedPool { pool, last_error }
    }

    /// A connection, or an error naming `target` and the last connection failure.
    pub(crate) async fn get(&self, target: impl FnOnce() -> String) -> Result<PooledConn<B>> {
        self.pool.get_owned().await.map_err(|e| match e {
            bb8::RunError::User(e) => Error::Connect {
                target: target(),
                source: Box::new(e),
            },
            bb8::RunError::TimedOut => {
                let last = self
                    .last_error
                    .0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                Error::PoolTimeout {
                    target: target(),
                    source: match last {
                        Some(cause) => format!("last connection attempt failed: {cause}").into(),
                        None => "every connection is in use".into(),
                    },
                }
            }
        })
    }
}
