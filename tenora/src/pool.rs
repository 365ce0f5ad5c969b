//! [`ManagedPool`]: a bb8 pool plus the last connection error it saw.
//!
//! bb8 opens connections in background tasks and, when they fail, only reports a timeout to the
//! caller of `get()`. Tenora keeps the last such error (via bb8's error sink) so a timeout says
//! *why* ("password authentication failed", "connection refused"), and opens the first
//! connection of every pool itself so a misconfiguration fails at once with the real cause.
//!
//! A caller that finds no idle connection in a pool that may grow opens the new connection
//! itself: it waits for the connection budget in its own task, first come first served, and
//! hands the connection to the pool. (Waiting inside bb8's background task would keep a pool
//! alive after the cache closed it, holding budget permits that the waiters need.)

use std::future::Future as _;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use bb8::ErrorSink;
use diesel_async::pooled_connection::PoolError;

use crate::backend::Backend;
use crate::budget::{Budget, BudgetManager, Budgeted, ConnectError, Slice, connect_with};
use crate::config::PoolConfig;
use crate::error::{Error as TenoraError, Result, Wait};

/// A pooled connection of backend `B`, as returned by [`Tenora::tenant_conn`](crate::Tenora::tenant_conn) and
/// [`Tenora::base_conn`](crate::Tenora::base_conn). Derefs to the backend's diesel-async connection and can be passed as
/// `&mut conn` to diesel-async queries; dropping it returns it to its pool.
pub type PooledConn<B> =
    bb8::PooledConnection<'static, crate::budget::BudgetManager<<B as Backend>::Manager>>;

type Error = ConnectError<PoolError>;

/// What the last background connection attempt of a pool ran into.
#[derive(Debug, Clone)]
enum Failure {
    Exhausted(String),
    Refused(String),
    Connect(String),
}

/// Remembers the last error of a pool's background connection attempts, and whether the last
/// one failed to connect at all (see `ManagedPool::is_failing`).
#[derive(Debug, Clone, Default)]
struct LastError(Arc<Mutex<Option<Failure>>>, Arc<AtomicBool>);

impl LastError {
    /// Keeps `error` as the pool's last connection failure.
    fn record(&self, error: &Error) {
        self.1
            .store(matches!(error, ConnectError::Connect(_)), Ordering::Relaxed);
        let failure = match error {
            ConnectError::Refused(m) => Failure::Refused(m.clone()),
            ConnectError::Connect(e) => Failure::Connect(e.to_string()),
            other => Failure::Exhausted(other.to_string()),
        };
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(failure);
    }
}

impl ErrorSink<Error> for LastError {
    fn sink(&self, error: Error) {
        match &error {
            // Not an attempt: callers open this pool's connections themselves.
            ConnectError::Deferred => return,
            // The budget is full: the caller waits for it in its own task.
            ConnectError::Exhausted(_) => {
                tracing::debug!(error = %error, "no budget for a pooled connection")
            }
            _ => tracing::warn!(error = %error, "pooled connection attempt failed"),
        }
        self.record(&error);
    }

    fn boxed_clone(&self) -> Box<dyn ErrorSink<Error>> {
        Box::new(self.clone())
    }
}

/// A claim to open one connection for a pool; released on drop, which wakes callers waiting
/// for room to grow.
struct Growing<B: Backend> {
    pool: Arc<ManagedPool<B>>,
}

impl<B: Backend> Drop for Growing<B> {
    fn drop(&mut self) {
        self.pool.growing.fetch_sub(1, Ordering::AcqRel);
        self.pool.growing_done.notify_waiters();
    }
}

/// What the hit path's non-blocking checkout found (see [`ManagedPool::take_idle`]).
pub(crate) enum Idle<B: Backend> {
    /// A connection to hand out.
    Live(PooledConn<B>),
    /// A connection idle for [`Backend::PING_IDLE_AFTER`] or more, to ping first, and its pool.
    Stale(PooledConn<B>, Arc<ManagedPool<B>>),
    /// A connection whose session has ended, marked to be closed when dropped.
    Broken(PooledConn<B>),
}

/// What [`ManagedPool::freshness`] found.
enum Freshness {
    /// Hand it out.
    Live,
    /// Idle for [`Backend::PING_IDLE_AFTER`] or more: ping it first.
    Stale,
    /// Its session has ended.
    Broken,
}

/// How often a caller waiting for a pool checks again whether it may open a connection itself
/// (connections closed as broken make room without waking anyone).
const ROOM_RECHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// A pool of one database's connections.
pub(crate) struct ManagedPool<B: Backend> {
    pool: bb8::Pool<BudgetManager<B::Manager>>,
    manager: Arc<B::Manager>,
    budget: Arc<Budget>,
    slice: Slice,
    last_error: LastError,
    /// A caller was refused a connection because connecting failed (not because the pool was
    /// busy): the database may be gone or its password changed.
    connect_failed: AtomicBool,
    /// Callers opening a connection for this pool right now.
    growing: AtomicU32,
    /// Signalled when such a caller is done.
    growing_done: tokio::sync::Notify,
    /// For messages: the pool's size and wait, and the config section they come from.
    max_size: u32,
    connection_timeout: u64,
    section: &'static str,
    /// The pool's database as messages name it (tenant pools; empty for the base pool, whose
    /// callers describe it).
    target: String,
}

impl<B: Backend> crate::pool_cache::CachedPool for Arc<ManagedPool<B>> {
    fn is_unused(&self) -> bool {
        ManagedPool::is_unused(self)
    }

    fn idle_connections(&self) -> u32 {
        self.pool.state().idle_connections
    }

    fn shed_idle(&self) -> bool {
        ManagedPool::shed_idle(self)
    }

    fn is_failing(&self) -> bool {
        self.last_error.1.load(Ordering::Relaxed) && self.pool.state().connections == 0
    }

    fn budget_key(&self) -> usize {
        Arc::as_ptr(&self.budget) as usize
    }
}

impl<B: Backend> ManagedPool<B> {
    /// Builds a pool and seeds it with `first`, a connection the caller opened directly (so
    /// that connection errors surface immediately, with their cause). Its connections count
    /// against `slice` of the budget; `section` names its config (`tenant.pool`, `base.pool`).
    pub(crate) fn new(
        config: &PoolConfig,
        section: &'static str,
        manager: B::Manager,
        budget: Arc<Budget>,
        slice: Slice,
        first: Budgeted<B::Connection>,
    ) -> Self {
        let manager = Arc::new(manager);
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
            // A failed attempt is not retried into a full budget or server: callers open
            // connections themselves when the budget is full (see `get`).
            .retry_connection(false)
            .build_unchecked(BudgetManager::new(
                Arc::clone(&manager),
                Arc::clone(&budget),
                slice,
                config.min_idle.is_some_and(|n| n > 0),
            ));
        // Only fails when the pool is full, which a new pool is not.
        let _ = pool.add(first);
        ManagedPool {
            pool,
            manager,
            budget,
            slice,
            last_error,
            connect_failed: AtomicBool::new(false),
            growing: AtomicU32::new(0),
            growing_done: tokio::sync::Notify::new(),
            max_size: config.max_size,
            connection_timeout: config.connection_timeout,
            section,
            target: String::new(),
        }
    }

    /// Sets how messages name the pool's database.
    pub(crate) fn describing(mut self, target: String) -> Self {
        self.target = target;
        self
    }

    /// The pool's database as messages name it.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// Whether a caller was refused a connection because connecting failed.
    pub(crate) fn connect_failed(&self) -> bool {
        self.connect_failed.load(Ordering::Relaxed)
    }

    /// Whether no connection of this pool is checked out.
    pub(crate) fn is_unused(&self) -> bool {
        let state = self.pool.state();
        state.connections == state.idle_connections
    }

    /// Closes one idle connection of this pool, if it has one, without waiting; returns
    /// whether it did. (bb8 has no call for that: take it in a single poll and mark it, so bb8
    /// drops it on return.)
    pub(crate) fn shed_idle(&self) -> bool {
        let mut checkout = std::pin::pin!(self.pool.get_owned());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match checkout.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(mut conn)) => {
                conn.retire();
                true
            }
            _ => false,
        }
    }

    /// The hit path's checkout: an idle connection taken without waiting (one poll of bb8's
    /// checkout), or `None` when the pool has none to give at once. A connection whose session
    /// has ended comes back as [`Idle::Broken`], for the caller to close outside the cache's
    /// lock before its waiting checkout takes the next.
    pub(crate) fn take_idle(self: &Arc<Self>) -> Option<Idle<B>> {
        let mut checkout = std::pin::pin!(self.pool.get_owned());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let Poll::Ready(Ok(mut conn)) = checkout.as_mut().poll(&mut cx) else {
            return None;
        };
        Some(match self.freshness(&mut conn) {
            Freshness::Live => Idle::Live(conn),
            Freshness::Stale => Idle::Stale(conn, Arc::clone(self)),
            Freshness::Broken => {
                // Closed by the caller, after the cache's lock is released.
                conn.retire();
                Idle::Broken(conn)
            }
        })
    }

    /// Whether a checked-out connection's session is there (the driver knows without a round
    /// trip), and whether it has been idle long enough to need a ping first.
    fn freshness(&self, conn: &mut PooledConn<B>) -> Freshness {
        use bb8::ManageConnection as _;
        let idle = conn.idle_for();
        if self.manager.has_broken(&mut **conn) {
            Freshness::Broken
        } else if idle < B::PING_IDLE_AFTER {
            Freshness::Live
        } else {
            Freshness::Stale
        }
    }

    /// A connection [`take_idle`](Self::take_idle) found stale, handed out if it answers a ping
    /// and closed if it does not.
    pub(crate) async fn checked(&self, mut conn: PooledConn<B>) -> Option<PooledConn<B>> {
        if self.ping(&mut conn).await {
            return Some(conn);
        }
        tracing::debug!(pool = %self.target, "closed a pooled connection whose session had ended");
        conn.retire();
        None
    }

    /// Claims room to open one connection, if the pool has room beyond the connections it has
    /// and those other callers are opening.
    fn claim_room(self: &Arc<Self>) -> Option<Growing<B>> {
        self.growing
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |g| {
                (self.pool.state().connections + g < self.max_size).then_some(g + 1)
            })
            .ok()
            .map(|_| Growing {
                pool: Arc::clone(self),
            })
    }

    /// A live connection, or an error naming `target` and the last connection failure.
    ///
    /// A connection whose server session has ended (the driver knows without a round trip) or
    /// that fails a ping after [`Backend::PING_IDLE_AFTER`] idle is closed instead of handed out,
    /// and another one taken: at most once per connection the pool can hold.
    pub(crate) async fn get(
        self: &Arc<Self>,
        target: impl Fn() -> String,
    ) -> Result<PooledConn<B>> {
        for _ in 0..self.max_size {
            let mut conn = self.checkout(&target).await?;
            if self.is_alive(&mut conn).await {
                return Ok(conn);
            }
            tracing::debug!(pool = %target(), "closed a pooled connection whose session had ended");
            conn.retire();
        }
        self.checkout(&target).await
    }

    /// Whether a checked-out connection's session is still there.
    async fn is_alive(&self, conn: &mut PooledConn<B>) -> bool {
        match self.freshness(conn) {
            Freshness::Live => true,
            Freshness::Stale => self.ping(conn).await,
            Freshness::Broken => false,
        }
    }

    /// Whether a checked-out connection answers a ping within the pool's `connection_timeout`
    /// (through a pooler a ping may queue for a server connection much longer).
    async fn ping(&self, conn: &mut PooledConn<B>) -> bool {
        use bb8::ManageConnection as _;
        let limit = std::time::Duration::from_secs(self.connection_timeout);
        matches!(
            tokio::time::timeout(limit, self.manager.is_valid(&mut **conn)).await,
            Ok(Ok(()))
        )
    }

    /// A connection from the pool (idle, returned by another caller, or newly opened).
    async fn checkout(self: &Arc<Self>, target: &impl Fn() -> String) -> Result<PooledConn<B>> {
        // The hit path: an idle connection is handed over in the first poll (one lock).
        let mut checkout = std::pin::pin!(self.pool.get_owned());
        let first = std::future::poll_fn(|cx| Poll::Ready(checkout.as_mut().poll(cx))).await;
        if let Poll::Ready(result) = first {
            return self.checked_out(result, target, false);
        }
        // No idle connection. The checkout waits (up to the pool's connection_timeout) for a
        // connection to come back; meanwhile, at most as many callers open connections as the
        // pool has room for, each under its own wait for the budget.
        loop {
            // Listening before looking: a grower finishing between the look and the wait
            // below still wakes this caller.
            let room_freed = self.growing_done.notified();
            let mut room_freed = std::pin::pin!(room_freed);
            room_freed.as_mut().enable();
            if let Some(claim) = self.claim_room() {
                // Whichever comes first: a connection returned to the pool, or the budget for
                // a new one. (Waiting for the budget alone could wait for the permit this
                // pool's own idle connection holds.)
                let permit = tokio::select! {
                    biased;
                    result = &mut checkout => return self.checked_out(result, target, true),
                    permit = self.budget.acquire(self.slice) => {
                        permit.map_err(|e| e.busy(target()))?
                    }
                };
                // The connection opens in a task of its own, so it is never abandoned half-way
                // when a returned connection comes first (through a pooler, every abandoned
                // attempt is a wasted login): it then joins the pool for the next caller.
                let mut opening = tokio::spawn(Self::grow(claim, permit, target()));
                tokio::select! {
                    biased;
                    result = &mut checkout => return self.checked_out(result, target, false),
                    opened = &mut opening => match opened {
                        Ok(opened) => opened?,
                        // A panic in the driver is a bug to surface, not a connect failure.
                        Err(gone) if gone.is_panic() => std::panic::resume_unwind(gone.into_panic()),
                        // Cancelled: the runtime is shutting down.
                        Err(gone) => {
                            return Err(TenoraError::Busy {
                                target: target(),
                                wait: Wait::Pool,
                                message: format!("the connection attempt was cancelled ({gone})"),
                            });
                        }
                    },
                }
                // The new connection is in the pool and this caller's checkout is in line for
                // it; if another caller takes it first, look again.
                continue;
            }
            tokio::select! {
                biased;
                result = &mut checkout => return self.checked_out(result, target, false),
                () = &mut room_freed => {}
                () = tokio::time::sleep(ROOM_RECHECK) => {}
            }
        }
    }

    /// Opens one more connection under `permit` (the room `claim` holds) and hands it to the
    /// pool (where the caller, or whoever asked first, takes it).
    ///
    /// Bounded by the pool's `connection_timeout` (the driver's own connect timeout covers only
    /// the TCP connect; a pooler may hold a login or the setup queries much longer). A failure
    /// is logged and kept as the pool's last error, for the waiters whose caller has left.
    async fn grow(claim: Growing<B>, permit: crate::budget::Permit, target: String) -> Result<()> {
        let pool = &claim.pool;
        let limit = std::time::Duration::from_secs(pool.connection_timeout);
        let connected =
            tokio::time::timeout(limit, connect_with(&*pool.manager, &pool.budget, permit))
                .await
                .unwrap_or_else(|_| {
                    Err(ConnectError::Connect(PoolError::ConnectionError(
                        diesel::ConnectionError::BadConnection(format!(
                            "no connection within {}.connection_timeout ({} s)",
                            pool.section, pool.connection_timeout
                        )),
                    )))
                });
        let conn = match connected {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(pool = %target, error = %e, "opening a pooled connection failed");
                pool.last_error.record(&e);
                return Err(pool.connect_error(e, target));
            }
        };
        pool.hand_over(conn).await;
        Ok(())
    }

    /// A failed connection attempt of this pool as the caller's error: busy (no budget, or the
    /// server out of slots), or a connect failure (which marks the pool, see `connect_failed`).
    fn connect_error(&self, error: Error, target: String) -> TenoraError {
        let busy = |wait, message| TenoraError::Busy {
            target: target.clone(),
            wait,
            message,
        };
        match error {
            ConnectError::Refused(message) => busy(Wait::Server, message),
            ConnectError::Connect(e) => {
                self.connect_failed.store(true, Ordering::Relaxed);
                TenoraError::Connect {
                    target,
                    source: Box::new(e),
                }
            }
            other => busy(Wait::Budget, other.to_string()),
        }
    }

    /// Puts a connection this caller opened into the pool. bb8 counts the attempts it has
    /// scheduled itself (which fail at once, see `BudgetManager`) against the pool's size until
    /// they ran: while the pool is not really full, try again after they did. If another caller
    /// filled the pool meanwhile, the connection closes again.
    async fn hand_over(&self, mut conn: Budgeted<B::Connection>) {
        let deadline =
            std::time::Instant::now() + std::time::Duration::from_secs(self.connection_timeout);
        loop {
            match self.pool.add(conn) {
                Ok(()) => return,
                Err(bb8::AddError::NoCapacity(back))
                    if self.pool.state().connections < self.max_size
                        && std::time::Instant::now() < deadline =>
                {
                    conn = back;
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                Err(_) => return,
            }
        }
    }

    /// A checkout's result, its error named and sorted (busy, or failing connections).
    /// `waiting_for_budget`: the caller was still waiting for the budget when the checkout
    /// timed out, so the budget is what ran out.
    fn checked_out(
        &self,
        result: std::result::Result<PooledConn<B>, bb8::RunError<Error>>,
        target: &impl Fn() -> String,
        waiting_for_budget: bool,
    ) -> Result<PooledConn<B>> {
        result.map_err(|e| {
            let target = target();
            let busy = |wait, message| TenoraError::Busy {
                target: target.clone(),
                wait,
                message,
            };
            match e {
                bb8::RunError::User(e) => self.connect_error(e, target.clone()),
                bb8::RunError::TimedOut if waiting_for_budget => {
                    let waited = std::time::Duration::from_secs(self.connection_timeout);
                    let limit = format!("{}.connection_timeout", self.section);
                    busy(
                        Wait::Budget,
                        self.budget.timed_out(self.slice, waited, limit).to_string(),
                    )
                }
                bb8::RunError::TimedOut => {
                    let last = self
                        .last_error
                        .0
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .take();
                    match last {
                        Some(Failure::Exhausted(message)) => busy(Wait::Budget, message),
                        Some(Failure::Refused(message)) => busy(Wait::Server, message),
                        Some(Failure::Connect(cause)) => {
                            self.connect_failed.store(true, Ordering::Relaxed);
                            TenoraError::PoolTimeout {
                                target: target.clone(),
                                source: format!("last connection attempt failed: {cause}").into(),
                            }
                        }
                        None => {
                            let state = self.pool.state();
                            busy(
                                Wait::Pool,
                                format!(
                                    "{} of its pool's {} connections are in use and none was \
                                     returned within {}.connection_timeout ({} s); retry later, \
                                     or raise {}.max_size",
                                    state.connections - state.idle_connections,
                                    self.max_size,
                                    self.section,
                                    self.connection_timeout,
                                    self.section
                                ),
                            )
                        }
                    }
                }
            }
        })
    }
}
