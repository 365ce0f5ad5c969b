//! Leases: a tenant being created, dropped or repaired is visibly alive.
//!
//! A lease is a lock that dies with the process holding it — a session-level lock on the
//! server (PostgreSQL advisory lock, MySQL named lock) or an OS file lock (SQLite) — so repair
//! can tell work that a crash abandoned (no lease) from work a live process is doing (leased),
//! and two processes creating one id get one success and one clear "in progress". Within a
//! process the server's locks are re-entrant, so a set of held ids keeps tasks apart too.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::backend::Backend;
use crate::backend::Server as _;
use crate::error::Result;
use crate::tenant_id::TenantId;
use crate::tenora::Tenora;

/// The ids this process holds leases on.
#[derive(Default)]
pub(crate) struct Held(Mutex<HashSet<TenantId>>);

impl Held {
    fn insert(&self, id: &TenantId) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone())
    }

    fn remove(&self, id: &TenantId) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

/// A held lease; release it with [`Lease::release`]. Dropped without that (a panic), it is
/// released in the background.
pub(crate) struct Lease<B: Backend> {
    tenora: Tenora<B>,
    id: TenantId,
    released: bool,
}

impl<B: Backend> Tenora<B> {
    /// Takes the lease of tenant `id` without waiting; `None` when a live process (this one
    /// included) holds it.
    pub(crate) async fn lease(&self, id: &TenantId) -> Result<Option<Lease<B>>> {
        if !self.leases().insert(id) {
            return Ok(None);
        }
        match self.default_server().try_lease(id, self.table()).await {
            Ok(true) => Ok(Some(Lease {
                tenora: self.clone(),
                id: id.clone(),
                released: false,
            })),
            Ok(false) => {
                self.leases().remove(id);
                Ok(None)
            }
            Err(e) => {
                self.leases().remove(id);
                Err(e)
            }
        }
    }

    /// Whether a live process (this one included) holds tenant `id`'s lease: takes and
    /// releases it to find out.
    pub(crate) async fn is_leased(&self, id: &TenantId) -> Result<bool> {
        match self.lease(id).await? {
            Some(lease) => {
                lease.release().await;
                Ok(false)
            }
            None => Ok(true),
        }
    }
}

impl<B: Backend> Lease<B> {
    /// Ends the lease.
    pub(crate) async fn release(mut self) {
        self.released = true;
        let tenora = &self.tenora;
        tenora
            .default_server()
            .release_lease(&self.id, tenora.table())
            .await;
        tenora.leases().remove(&self.id);
    }
}

impl<B: Backend> Drop for Lease<B> {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (tenora, id) = (self.tenora.clone(), self.id.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    tenora
                        .default_server()
                        .release_lease(&id, tenora.table())
                        .await;
                    tenora.leases().remove(&id);
                });
            }
            // No runtime left: the process is ending, and the lease with it.
            Err(_) => tenora.leases().remove(&id),
        }
    }
}
