//! The connection budget: a cap on the server connections Tenora holds at once, across every
//! tenant pool, the base pool and direct (migration, provisioning) connections.
//!
//! Each open connection holds a permit. When none is free, a request first asks the pool cache
//! to close idle pools (least recently used first) and then waits, up to `acquire_timeout`,
//! before failing with [`Error::PoolExhausted`](crate::Error::PoolExhausted).

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Something that can give connections back: the pool cache closing an idle pool.
pub(crate) trait Reclaim: Send + Sync {
    /// Closes one idle pool (least recently used first); returns whether it closed one.
    fn reclaim_one(&self) -> bool;
}

/// The shared budget state.
pub(crate) struct Budget {
    semaphore: Option<Arc<Semaphore>>,
    max: Option<u32>,
    /// Part of `max` set aside for the backend's administrative sessions.
    reserved: u32,
    acquire_timeout: Duration,
    open: AtomicI64,
    waits: AtomicU64,
    reclaimer: OnceLock<Weak<dyn Reclaim>>,
}

/// The budget is used up and nothing could be reclaimed in time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exhausted {
    pub(crate) budget: u32,
    pub(crate) reserved: u32,
}

impl fmt::Display for Exhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "all {} connections of the connection budget (pool_cache.max_connections) are in use",
            self.budget
        )?;
        if self.reserved > 0 {
            write!(
                f,
                " ({} of them kept for administrative sessions)",
                self.reserved
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Exhausted {}

/// A permit for one open connection (a no-op without a budget). Counts open connections.
pub(crate) struct Permit {
    _permit: Option<OwnedSemaphorePermit>,
    budget: Arc<Budget>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.budget.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Budget {
    /// A budget of `max` connections, `reserved` of which are kept for connections the budget
    /// does not hand out (the backend's administrative sessions). `max` must exceed `reserved`.
    pub(crate) fn new(max: Option<u32>, reserved: u32, acquire_timeout: Duration) -> Arc<Self> {
        Arc::new(Budget {
            semaphore: max.map(|m| Arc::new(Semaphore::new(m.saturating_sub(reserved) as usize))),
            max,
            reserved,
            acquire_timeout,
            open: AtomicI64::new(0),
            waits: AtomicU64::new(0),
            reclaimer: OnceLock::new(),
        })
    }

    pub(crate) fn set_reclaimer(&self, reclaimer: Weak<dyn Reclaim>) {
        let _ = self.reclaimer.set(reclaimer);
    }

    /// Connections open right now.
    pub(crate) fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed).max(0) as u64
    }

    /// How often a request had to wait for the budget.
    pub(crate) fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    /// The configured cap.
    pub(crate) fn max(&self) -> Option<u32> {
        self.max
    }

    /// A permit for one more connection, reclaiming idle pools and waiting if needed.
    pub(crate) async fn acquire(self: &Arc<Self>) -> Result<Permit, Exhausted> {
        let permit = match &self.semaphore {
            None => None,
            Some(sem) => Some(match Arc::clone(sem).try_acquire_owned() {
                Ok(p) => p,
                Err(_) => self.acquire_slow(sem).await?,
            }),
        };
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(Permit {
            _permit: permit,
            budget: Arc::clone(self),
        })
    }

    async fn acquire_slow(&self, sem: &Arc<Semaphore>) -> Result<OwnedSemaphorePermit, Exhausted> {
        self.waits.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + self.acquire_timeout;
        loop {
            let reclaimed = self
                .reclaimer
                .get()
                .and_then(Weak::upgrade)
                .is_some_and(|r| r.reclaim_one());
            // Closed pools give their permits back as their connections drop; poll briefly
            // after a reclaim, otherwise wait for any permit until the deadline.
            let now = Instant::now();
            if now >= deadline {
                return Err(Exhausted {
                    budget: self.max.unwrap_or(0),
                    reserved: self.reserved,
                });
            }
            let wait = if reclaimed {
                Duration::from_millis(5)
            } else {
                Duration::from_millis(100)
            }
            .min(deadline - now);
            if let Ok(Ok(p)) = tokio::time::timeout(wait, Arc::clone(sem).acquire_owned()).await {
                return Ok(p);
            }
        }
    }
}

/// A connection that holds a budget permit for as long as it is open. Derefs to the
/// backend's diesel-async connection, so diesel-async queries take `&mut conn` as usual.
pub struct Budgeted<C> {
    conn: C,
    _permit: Permit,
}

impl<C> Deref for Budgeted<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.conn
    }
}

impl<C> DerefMut for Budgeted<C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.conn
    }
}

impl<C> Budgeted<C> {
    pub(crate) fn new(conn: C, permit: Permit) -> Self {
        Budgeted {
            conn,
            _permit: permit,
        }
    }

    /// The connection and its permit, for code that must move the connection (migrations);
    /// keep the permit alive while the connection is open.
    pub(crate) fn into_parts(self) -> (C, Permit) {
        (self.conn, self._permit)
    }
}

/// Why a budgeted pool could not open a connection.
#[derive(Debug)]
pub enum ConnectError<E> {
    /// The connection budget is used up.
    Exhausted(String),
    /// Connecting failed.
    Connect(E),
}

impl<E: fmt::Display> fmt::Display for ConnectError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Exhausted(m) => f.write_str(m),
            ConnectError::Connect(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for ConnectError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Exhausted(_) => None,
            ConnectError::Connect(e) => Some(e),
        }
    }
}

/// A bb8 manager that takes a budget permit for every connection it opens.
pub struct BudgetManager<M> {
    inner: M,
    budget: Arc<Budget>,
}

impl<M> BudgetManager<M> {
    pub(crate) fn new(inner: M, budget: Arc<Budget>) -> Self {
        BudgetManager { inner, budget }
    }
}

impl<M: bb8::ManageConnection> bb8::ManageConnection for BudgetManager<M> {
    type Connection = Budgeted<M::Connection>;
    type Error = ConnectError<M::Error>;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        let permit = self
            .budget
            .acquire()
            .await
            .map_err(|e| ConnectError::Exhausted(e.to_string()))?;
        let conn = self.inner.connect().await.map_err(ConnectError::Connect)?;
        Ok(Budgeted::new(conn, permit))
    }

    async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        self.inner
            .is_valid(&mut conn.conn)
            .await
            .map_err(ConnectError::Connect)
    }

    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        self.inner.has_broken(&mut conn.conn)
    }
}
