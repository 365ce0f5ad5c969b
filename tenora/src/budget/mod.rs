//! The connection budget: a cap on the server connections Tenora holds at once, across every
//! tenant pool, the base pool, the administrative sessions and direct (migration,
//! provisioning) connections.
//!
//! Its size comes from [`plan`]: `pool_cache.max_connections`, or a share of the server's free
//! slots read at connect. The administrative sessions, the base pool and a work slice are kept
//! aside, so registry lookups, sign-ups and migrations never wait behind busy tenant pools;
//! tenant pools share the rest. Each open connection holds a permit. When none is free, a
//! request asks the pool cache to close idle pools (least recently used first) and waits in a
//! first-come, first-served queue, up to `acquire_timeout`, before failing with
//! [`Error::Busy`](crate::Error::Busy).
//!
//! When the server itself refuses a connection for lack of slots (other clients took them),
//! the tenant pools' slice shrinks to what is open at that moment, so Tenora stops knocking;
//! it grows back by one connection every [`REGROW_AFTER`] without another refusal.

mod manager;
pub mod plan;

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub(crate) use manager::connect_with;
pub use manager::{BudgetManager, Budgeted, ConnectError};
use plan::BudgetPlan;

/// How long the budget stays shrunk after the server refused a connection before it grows
/// back by one.
pub const REGROW_AFTER: Duration = Duration::from_secs(10);

/// Marks a connection error as the server being out of connection slots ("too many clients",
/// "remaining connection slots are reserved", MySQL error 1040). The backends put it in front
/// of the server's message; the budget shrinks.
pub(crate) const SERVER_FULL: &str = "the server has no free connection slots";

/// Marks a connection error as an account's or database's own connection limit being reached
/// (a PostgreSQL role's or database's `CONNECTION LIMIT`, MySQL errors 1203/1226). Busy too,
/// but only for that account: the budget stays.
pub(crate) const ACCOUNT_FULL: &str = "the account has no free connection slots";

/// Marks a connection error as the server refusing the password (PostgreSQL SQLSTATE 28P01,
/// MySQL error 1045): the caller may look the password up again (it may have been rotated by
/// another process).
pub(crate) const AUTH_FAILED: &str = "the server refused the password";

/// Whether a connection error's message carries [`AUTH_FAILED`].
pub(crate) fn is_auth_failure(error: &dyn fmt::Display) -> bool {
    error.to_string().contains(AUTH_FAILED)
}

/// How a connection error's message says the server refused for lack of slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Full {
    /// The whole server: shrink the budget.
    Server,
    /// One account or database.
    Account,
}

/// Whether a connection error's message says the server, or the account, is out of
/// connection slots.
fn full(message: &str) -> Option<Full> {
    if message.contains(SERVER_FULL) {
        Some(Full::Server)
    } else if message.contains(ACCOUNT_FULL) {
        Some(Full::Account)
    } else {
        None
    }
}

/// What a caller is told when the server refused a connection for lack of slots.
fn refused_message(error: &str, budget: Option<u32>) -> String {
    match budget {
        Some(budget) => format!(
            "{error}; Tenora lowered its connection budget to {budget} and raises it again \
             slowly; retry later, or raise the server's max_connections"
        ),
        None => format!("{error}; retry later"),
    }
}

/// The setting that bounds a wait for the budget.
const ACQUIRE_TIMEOUT: &str = "pool_cache.acquire_timeout";

/// Something that can give connections back: the pool cache closing idle pools or idle
/// connections.
pub(crate) trait Reclaim: Send + Sync {
    /// Closes an idle pool, or failing that one idle connection (least recently used first);
    /// returns whether it closed anything.
    fn reclaim_one(&self) -> bool;
}

/// Which part of the budget a connection is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slice {
    /// Tenant pool connections (shared, reclaimable).
    Pools,
    /// Migrations and provisioning: the work slice, else the pools' slice, whichever frees
    /// first.
    Work,
    /// The base pool: kept aside at its `max_size`; never takes from the other slices.
    Base,
}

impl Slice {
    /// The slice's name in metrics.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Slice::Pools => "pools",
            Slice::Work => "work",
            Slice::Base => "base",
        }
    }
}

/// Where a slice's permits come from: `first`, else (for migrations) the pools' slice.
struct Lanes<'a> {
    first: &'a Arc<Semaphore>,
    first_is_pools: bool,
    then_pools: Option<&'a Arc<Semaphore>>,
    /// Whether waiting may close idle tenant pools.
    reclaim: bool,
}

/// State of a budget the server made smaller.
#[derive(Debug, Default)]
struct Shrink {
    /// Permits taken away from the pools' slice.
    taken: u32,
    /// Of `taken`, permits still held by open connections: forgotten as they are released.
    debt: u32,
    /// When the budget last shrank or grew.
    changed: Option<Instant>,
}

/// The shared budget state.
pub(crate) struct Budget {
    plan: BudgetPlan,
    pools: Option<Arc<Semaphore>>,
    work: Option<Arc<Semaphore>>,
    base: Option<Arc<Semaphore>>,
    acquire_timeout: Duration,
    open: AtomicI64,
    waits: AtomicU64,
    wait_nanos: AtomicU64,
    busy: AtomicU64,
    refused: AtomicU64,
    shrink: Mutex<Shrink>,
    reclaimer: OnceLock<Weak<dyn Reclaim>>,
}

/// The budget is used up and nothing could be reclaimed in time.
#[derive(Debug, Clone)]
pub(crate) struct Exhausted {
    /// The slice that had no permit.
    pub(crate) slice: Slice,
    /// The size of that slice now.
    pub(crate) size: u32,
    /// The whole budget now.
    pub(crate) budget: u32,
    pub(crate) waited: Duration,
    /// The setting that bounded the wait.
    pub(crate) limit: String,
}

impl fmt::Display for Exhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, raise) = match self.slice {
            Slice::Base => ("the base pool", "base.pool.max_size"),
            _ => ("tenant connections", "pool_cache.max_connections"),
        };
        write!(
            f,
            "all {} connections the connection budget ({} in all) keeps for {what} are in use \
             and none became free within {} ({} s); retry later, or raise {raise}",
            self.size,
            self.budget,
            self.limit,
            self.waited.as_secs()
        )
    }
}

impl std::error::Error for Exhausted {}

impl Exhausted {
    /// The caller's error: `target` is busy, the budget's wait ran out.
    pub(crate) fn busy(self, target: String) -> crate::error::Error {
        crate::error::Error::Busy {
            target,
            wait: crate::error::Wait::Budget,
            message: self.to_string(),
        }
    }
}

/// A permit for one open connection (a no-op without a budget). Counts open connections.
pub(crate) struct Permit {
    permit: Option<OwnedSemaphorePermit>,
    from_pools: bool,
    budget: Arc<Budget>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.budget.open.fetch_sub(1, Ordering::Relaxed);
        if self.from_pools
            && self.budget.pay_debt()
            && let Some(permit) = self.permit.take()
        {
            permit.forget();
        }
    }
}

impl Budget {
    /// A budget following `plan`.
    pub(crate) fn new(plan: BudgetPlan, acquire_timeout: Duration) -> Arc<Self> {
        let semaphore = |n: u32| Arc::new(Semaphore::new(n as usize));
        Arc::new(Budget {
            pools: plan.pools.map(semaphore),
            work: plan.pools.map(|_| semaphore(plan.work)),
            base: plan.pools.map(|_| semaphore(plan.base)),
            plan,
            acquire_timeout,
            open: AtomicI64::new(0),
            waits: AtomicU64::new(0),
            wait_nanos: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            shrink: Mutex::new(Shrink::default()),
            reclaimer: OnceLock::new(),
        })
    }

    pub(crate) fn set_reclaimer(&self, reclaimer: Weak<dyn Reclaim>) {
        let _ = self.reclaimer.set(reclaimer);
    }

    pub(crate) fn plan(&self) -> &BudgetPlan {
        &self.plan
    }

    fn shrink_state(&self) -> std::sync::MutexGuard<'_, Shrink> {
        // Every update is a few field writes: a poisoned lock holds consistent numbers.
        self.shrink.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connections open right now (Tenora's own count; tests check the server's).
    pub(crate) fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed).max(0) as u64
    }

    /// How often a request had to wait for the budget, and for how long in all.
    pub(crate) fn waits(&self) -> (u64, Duration) {
        (
            self.waits.load(Ordering::Relaxed),
            Duration::from_nanos(self.wait_nanos.load(Ordering::Relaxed)),
        )
    }

    /// Requests refused after waiting out `acquire_timeout`.
    pub(crate) fn busy(&self) -> u64 {
        self.busy.load(Ordering::Relaxed)
    }

    /// Connections the server refused for lack of slots.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The budget now: the plan's, less what the server's refusals took away.
    pub(crate) fn max(&self) -> Option<u32> {
        let taken = self.shrink_state().taken;
        self.plan.max_connections.map(|m| m - taken)
    }

    /// The pools' slice now.
    fn pools_now(&self) -> u32 {
        let taken = self.shrink_state().taken;
        self.plan.pools.unwrap_or(0) - taken
    }

    /// The semaphores `slice` takes its permits from (`None`: no budget).
    fn lanes(&self, slice: Slice) -> Option<Lanes<'_>> {
        let pools = self.pools.as_ref()?;
        Some(match slice {
            Slice::Pools => Lanes {
                first: pools,
                first_is_pools: true,
                then_pools: None,
                reclaim: true,
            },
            Slice::Work => Lanes {
                first: self.work.as_ref()?,
                first_is_pools: false,
                then_pools: Some(pools),
                reclaim: true,
            },
            Slice::Base => Lanes {
                first: self.base.as_ref()?,
                first_is_pools: false,
                then_pools: None,
                reclaim: false,
            },
        })
    }

    /// A free permit of `lanes`, if there is one now.
    fn take_now(&self, lanes: &Lanes<'_>) -> Option<(OwnedSemaphorePermit, bool)> {
        Arc::clone(lanes.first)
            .try_acquire_owned()
            .ok()
            .map(|p| (p, lanes.first_is_pools))
            .or_else(|| {
                let pools = lanes.then_pools?;
                Arc::clone(pools)
                    .try_acquire_owned()
                    .ok()
                    .map(|p| (p, true))
            })
    }

    /// Closes the least recently used idle pool; returns whether there was one.
    fn reclaim(&self) -> bool {
        self.reclaimer
            .get()
            .and_then(Weak::upgrade)
            .is_some_and(|r| r.reclaim_one())
    }

    /// A caller gave up waiting for `slice` after `waited`, bounded by the setting `limit`.
    pub(crate) fn timed_out(&self, slice: Slice, waited: Duration, limit: String) -> Exhausted {
        self.busy.fetch_add(1, Ordering::Relaxed);
        Exhausted {
            limit,
            ..self.exhausted(slice, waited)
        }
    }

    fn exhausted(&self, slice: Slice, waited: Duration) -> Exhausted {
        Exhausted {
            limit: ACQUIRE_TIMEOUT.to_owned(),
            slice,
            size: if slice == Slice::Base {
                self.plan.base
            } else {
                self.pools_now()
            },
            budget: self.max().unwrap_or(0),
            waited,
        }
    }

    /// A permit for one more connection of `slice`, reclaiming idle pools and waiting if
    /// needed.
    pub(crate) async fn acquire(self: &Arc<Self>, slice: Slice) -> Result<Permit, Exhausted> {
        self.regrow();
        let Some(lanes) = self.lanes(slice) else {
            return Ok(self.permit(None));
        };
        let taken = match self.take_now(&lanes) {
            Some(taken) => taken,
            None => self.wait(slice, &lanes).await?,
        };
        Ok(self.permit(Some(taken)))
    }

    /// A permit if one is free now (after closing one idle pool, if need be), without waiting
    /// in line.
    pub(crate) fn try_acquire(self: &Arc<Self>, slice: Slice) -> Result<Permit, Exhausted> {
        self.regrow();
        let Some(lanes) = self.lanes(slice) else {
            return Ok(self.permit(None));
        };
        let taken = self
            .take_now(&lanes)
            .or_else(|| (lanes.reclaim && self.reclaim()).then(|| self.take_now(&lanes))?)
            .ok_or_else(|| self.exhausted(slice, Duration::ZERO))?;
        Ok(self.permit(Some(taken)))
    }

    fn permit(self: &Arc<Self>, taken: Option<(OwnedSemaphorePermit, bool)>) -> Permit {
        self.open.fetch_add(1, Ordering::Relaxed);
        let (permit, from_pools) = match taken {
            Some((p, from_pools)) => (Some(p), from_pools),
            None => (None, false),
        };
        Permit {
            permit,
            from_pools,
            budget: Arc::clone(self),
        }
    }

    /// Waits in line for a permit of `lanes` (whichever frees first), closing idle pools
    /// meanwhile where the slice may, until `acquire_timeout`. The acquire futures live across
    /// the loop, so the caller keeps its place in the semaphores' first-come, first-served
    /// queues.
    async fn wait(
        &self,
        slice: Slice,
        lanes: &Lanes<'_>,
    ) -> Result<(OwnedSemaphorePermit, bool), Exhausted> {
        self.waits.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        let deadline = tokio::time::sleep(self.acquire_timeout);
        let from_first = Arc::clone(lanes.first).acquire_owned();
        let from_pools = async {
            match lanes.then_pools {
                Some(pools) => Arc::clone(pools).acquire_owned().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline, from_first, from_pools);
        let result = loop {
            // A budget the server shrank grows back while callers wait, too.
            self.regrow();
            let reclaimed = lanes.reclaim && self.reclaim();
            // A closed pool gives its permits back as its connections drop: look again soon
            // after a reclaim, otherwise only once in a while (the permits come by themselves).
            let tick = if reclaimed {
                Duration::from_millis(5)
            } else {
                Duration::from_millis(100)
            };
            tokio::select! {
                biased;
                Ok(p) = &mut from_first => break Ok((p, lanes.first_is_pools)),
                Ok(p) = &mut from_pools => break Ok((p, true)),
                () = &mut deadline => {
                    break Err(self.timed_out(slice, self.acquire_timeout, ACQUIRE_TIMEOUT.into()));
                }
                () = tokio::time::sleep(tick) => {}
            }
        };
        let elapsed = start.elapsed();
        crate::telemetry::budget_wait(slice.name(), elapsed, result.is_ok());
        let waited = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.wait_nanos.fetch_add(waited, Ordering::Relaxed);
        result
    }

    /// What to tell the caller of a connect that failed with `error`, if the server (or the
    /// account) refused it for lack of slots; `None` for any other failure. A full server
    /// shrinks the budget, counted while the refused attempt's `permit` is still held.
    pub(crate) fn refusal(&self, error: &dyn fmt::Display, permit: Permit) -> Option<String> {
        let message = error.to_string();
        let now = match full(&message)? {
            Full::Server => self.server_refused(),
            Full::Account => None,
        };
        drop(permit);
        Some(refused_message(&message, now))
    }

    /// The server refused a connection for lack of slots: shrink the pools' slice to the
    /// tenant connections open now (at least one), so Tenora waits in its own queue instead of
    /// knocking again. Returns the budget after shrinking.
    fn server_refused(&self) -> Option<u32> {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let (Some(pools), Some(planned)) = (&self.pools, self.plan.pools) else {
            return None;
        };
        let new_max = {
            let mut shrink = self.shrink_state();
            let capacity = planned - shrink.taken;
            // Permits held by connections that count (those owed back are already taken).
            let held = capacity
                .saturating_sub(u32::try_from(pools.available_permits()).unwrap_or(u32::MAX));
            // The refused attempt still holds one of them.
            let target = held.saturating_sub(1).max(1);
            let cut = capacity.saturating_sub(target);
            if cut > 0 {
                let forgotten = u32::try_from(pools.forget_permits(cut as usize)).unwrap_or(cut);
                shrink.debt += cut - forgotten;
                shrink.taken += cut;
            }
            shrink.changed = Some(Instant::now());
            self.plan.max_connections.map(|m| m - shrink.taken)
        };
        tracing::warn!(
            budget = new_max,
            "the database server refused a connection: it has no free connection slots; \
             lowered the connection budget (raise the server's max_connections, or lower \
             pool_cache.max_connections)"
        );
        new_max
    }

    /// Gives back one permit taken by a refusal, once the budget has been small for
    /// [`REGROW_AFTER`].
    fn regrow(&self) {
        let Some(pools) = &self.pools else { return };
        let mut shrink = self.shrink_state();
        if shrink.taken == 0 || shrink.changed.is_some_and(|t| t.elapsed() < REGROW_AFTER) {
            return;
        }
        if shrink.debt > 0 {
            // A held permit is no longer owed: it returns when its connection closes.
            shrink.debt -= 1;
        } else {
            pools.add_permits(1);
        }
        shrink.taken -= 1;
        shrink.changed = Some(Instant::now());
    }

    /// Whether a released permit of the pools' slice must be forgotten (the server took it).
    fn pay_debt(&self) -> bool {
        let mut shrink = self.shrink_state();
        if shrink.debt > 0 {
            shrink.debt -= 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::plan::{BudgetPlan, ServerLimits};
    use super::*;
    use crate::config::Config;

    /// A budget of `pools` tenant connections (plus PostgreSQL's fixed slices).
    fn budget(pools: u32, timeout_ms: u64) -> Arc<Budget> {
        let mut config = Config::postgres("postgres://admin@127.0.0.1/app");
        config.pool_cache.max_connections = Some(BudgetPlan::minimum(2, 4) - 1 + pools);
        let plan = BudgetPlan::new(&config, 2, None::<ServerLimits>).unwrap();
        assert_eq!(plan.pools, Some(pools));
        Budget::new(plan, Duration::from_millis(timeout_ms))
    }

    #[tokio::test]
    async fn waiters_are_served_in_arrival_order() {
        let budget = budget(1, 5_000);
        let held = budget.acquire(Slice::Pools).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..4 {
            let (waiter, order) = (Arc::clone(&budget), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                let permit = waiter.acquire(Slice::Pools).await.unwrap();
                order.lock().unwrap().push(i);
                drop(permit);
            }));
            // Each waiter is queued before the next one arrives.
            while budget.waits().0 < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3]);
    }

    #[tokio::test]
    async fn work_has_its_own_slice_and_waits_time_out() {
        let budget = budget(1, 50);
        let _pool = budget.acquire(Slice::Pools).await.unwrap();
        // Tenant connections hold the pools' slice: migrations still get the work slice.
        let work = budget.acquire(Slice::Work).await.unwrap();
        assert!(!work.from_pools);
        // The base pool never waits.
        let _base = budget.acquire(Slice::Base).await.unwrap();
        let err = budget.acquire(Slice::Pools).await.err().expect("busy");
        assert_eq!(err.size, 1);
        assert!(
            err.to_string().contains("pool_cache.acquire_timeout"),
            "{err}"
        );
        assert_eq!(budget.busy(), 1);
        assert_eq!(budget.open(), 3);
    }

    #[tokio::test]
    async fn a_refusal_shrinks_to_what_is_open_and_it_grows_back() {
        let budget = budget(6, 50);
        let planned = budget.max().unwrap();
        let held: Vec<_> = acquire_n(&budget, 3).await;
        // The fourth attempt is refused by the server while three are open.
        let refused = budget.acquire(Slice::Pools).await.unwrap();
        assert_eq!(budget.server_refused(), Some(planned - 3));
        drop(refused);
        // Three open, three allowed: the next one waits and times out.
        assert!(budget.acquire(Slice::Pools).await.is_err());
        drop(held);
        assert_eq!(budget.pools_now(), 3);
        assert_eq!(budget.pools.as_ref().unwrap().available_permits(), 3);
        // Later, the budget grows back one permit at a time.
        budget.shrink_state().changed = Some(Instant::now() - REGROW_AFTER);
        let _p = budget.acquire(Slice::Pools).await.unwrap();
        assert_eq!(budget.max(), Some(planned - 2));
    }

    async fn acquire_n(budget: &Arc<Budget>, n: usize) -> Vec<Permit> {
        let mut permits = Vec::new();
        for _ in 0..n {
            permits.push(budget.acquire(Slice::Pools).await.unwrap());
        }
        permits
    }
}
