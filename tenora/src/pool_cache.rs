//! [`PoolCache`]: one bb8 pool per tenant, created once, shared by every caller.
//!
//! The hit path takes a read lock for a map lookup and an `Arc` clone, never across an
//! `.await`. A miss inserts an empty `OnceCell` under a short write lock and then builds the
//! pool outside the lock: concurrent first calls for one tenant wait on the same cell
//! (single-flight), and a slow miss never blocks hits or misses of other tenants. A failed build
//! removes its cell again, so lookups of unknown ids leave nothing behind.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use crate::budget::Reclaim;
use crate::tenant_id::TenantId;

/// What the cache needs to know about a pool to close it safely.
pub(crate) trait CachedPool: Clone + Send + Sync + 'static {
    /// No connection of the pool is checked out.
    fn is_unused(&self) -> bool;
    /// Connections of the pool that are open and not checked out.
    fn idle_connections(&self) -> u32;
    /// Closes one idle connection of the pool, if it has one; returns whether it did.
    fn shed_idle(&self) -> bool;
    /// Its last connection attempt failed and it has no connection left (its tenant may have
    /// been dropped elsewhere): closed at the next reap, however recently used, so it stops
    /// trying.
    fn is_failing(&self) -> bool {
        false
    }
    /// Which connection budget the pool's connections count against (its address), so a
    /// server short of connections reclaims only its own pools.
    fn budget_key(&self) -> usize {
        0
    }
}

/// A cache slot: the pool (once built) and when it was last handed out.
pub(crate) struct Entry<P> {
    pool: OnceCell<P>,
    last_used: AtomicU64,
    /// Hits counted on the entry's own cache line (a global counter would be contended by
    /// every core on the hit path); folded into the cache total when the entry goes.
    hits: AtomicU64,
}

impl<P> Entry<P> {
    fn initialized(&self) -> bool {
        self.pool.initialized()
    }

    fn get(&self) -> Option<&P> {
        self.pool.get()
    }
}

type Cell<P> = Arc<Entry<P>>;

/// Counters of the pool cache, as returned by [`Tenora::stats`](crate::Tenora::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Tenant pools currently cached.
    pub cached_pools: usize,
    /// Lookups served by a cached pool.
    pub hits: u64,
    /// Lookups that found no ready pool.
    pub misses: u64,
    /// Pools built (at most one per tenant per cache lifetime, unless evicted).
    pub pools_created: u64,
    /// Pools closed: by `evict`/`close_all`, for `max_cached_tenants`, for the connection
    /// budget, or after `pool_idle_timeout`.
    pub evictions: u64,
    /// Server connections open now (tenant pools, base pool, direct connections).
    pub open_connections: u64,
    /// The connection budget now (configured or derived; it shrinks for a while after the
    /// server refused connections), if any.
    pub max_connections: Option<u32>,
    /// Where the budget came from.
    pub budget_source: crate::budget::plan::BudgetSource,
    /// Requests that had to wait for the connection budget.
    pub waits: u64,
    /// Time spent waiting for the connection budget, all waits together.
    pub wait_time: std::time::Duration,
    /// Requests that waited out `pool_cache.acquire_timeout` and got
    /// [`Error::Busy`](crate::Error::Busy).
    pub busy: u64,
    /// Connections the server refused for lack of connection slots.
    pub refused_by_server: u64,
}

/// Removes its cell from the map on drop if the cell is still empty and nobody else holds it
/// (other callers waiting on it build it in turn; the last one to give up removes it).
struct EmptyCellGuard<'a, P: CachedPool> {
    cache: &'a PoolCache<P>,
    id: &'a TenantId,
    cell: Cell<P>,
}

impl<P: CachedPool> Drop for EmptyCellGuard<'_, P> {
    fn drop(&mut self) {
        if self.cell.get().is_some() {
            return;
        }
        let mut map = self.cache.write();
        let ours_and_unused = map.get(self.id).is_some_and(|c| {
            Arc::ptr_eq(c, &self.cell) && c.get().is_none() && Arc::strong_count(c) == 2
        });
        if ours_and_unused {
            map.remove(self.id);
        }
    }
}

/// A map from tenant to pool with single-flight creation.
pub(crate) struct PoolCache<P> {
    map: RwLock<HashMap<TenantId, Cell<P>>>,
    epoch: Instant,
    max_cached: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    created: AtomicU64,
    evictions: AtomicU64,
}

impl<P: CachedPool> Reclaim for PoolCache<P> {
    /// Gives connections back to the budget: closes the least recently used pool that holds
    /// idle connections and none checked out; failing that, closes one idle connection of the
    /// least recently used pool that has one. Pools without idle connections are left alone
    /// (closing them frees nothing).
    fn reclaim_one(&self) -> bool {
        self.reclaim_matching(|_| true)
    }
}

/// Reclaims, for one server's connection budget, only the pools that count against it.
pub(crate) struct BudgetReclaimer<P> {
    pub(crate) cache: std::sync::Weak<PoolCache<P>>,
    pub(crate) budget_key: usize,
}

impl<P: CachedPool> Reclaim for BudgetReclaimer<P> {
    fn reclaim_one(&self) -> bool {
        self.cache.upgrade().is_some_and(|cache| {
            cache.reclaim_matching(|pool| pool.budget_key() == self.budget_key)
        })
    }
}

impl<P: CachedPool> PoolCache<P> {
    /// [`Reclaim::reclaim_one`] among the pools `wanted` accepts.
    fn reclaim_matching(&self, wanted: impl Fn(&P) -> bool) -> bool {
        let mut map = self.write();
        let with_idle = |require_unused: bool| {
            map.iter()
                .filter(|(_, c)| {
                    c.get().is_some_and(|p| {
                        wanted(p) && p.idle_connections() > 0 && (!require_unused || p.is_unused())
                    })
                })
                .min_by_key(|(_, c)| c.last_used.load(Ordering::Relaxed))
                .map(|(id, _)| id.clone())
        };
        if let Some(id) = with_idle(true) {
            if let Some(cell) = map.remove(&id) {
                self.retire(&cell);
            }
            self.evictions.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(tenant = %id, "closed an idle tenant pool for the connection budget");
            return true;
        }
        with_idle(false)
            .and_then(|id| {
                map.get(&id)
                    .and_then(|c| c.get())
                    .map(CachedPool::shed_idle)
            })
            .unwrap_or(false)
    }
}

impl<P: CachedPool> PoolCache<P> {
    pub(crate) fn new(max_cached: usize) -> Self {
        PoolCache {
            map: RwLock::new(HashMap::new()),
            epoch: Instant::now(),
            max_cached: max_cached.max(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            created: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<TenantId, Cell<P>>> {
        // A panic while holding the lock cannot leave the map inconsistent (every operation is
        // a single insert/remove), so a poisoned lock is safe to keep using.
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<TenantId, Cell<P>>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The tenant's pool, building it with `build` on a miss.
    pub(crate) async fn get_or_try_init<E, F, Fut>(&self, id: &TenantId, build: F) -> Result<P, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<P, E>>,
    {
        let cell = {
            let map = self.read();
            match map.get(id) {
                Some(cell) => {
                    if let Some(pool) = cell.get() {
                        cell.last_used.store(self.now(), Ordering::Relaxed);
                        cell.hits.fetch_add(1, Ordering::Relaxed);
                        return Ok(pool.clone());
                    }
                    Arc::clone(cell)
                }
                None => {
                    drop(map);
                    // Make room only once the tenant proved real (below): a stream of unknown
                    // ids must not push warm pools out.
                    let mut map = self.write();
                    let now = self.now();
                    Arc::clone(map.entry(id.clone()).or_insert_with(|| {
                        Arc::new(Entry {
                            pool: OnceCell::new(),
                            last_used: AtomicU64::new(now),
                            hits: AtomicU64::new(0),
                        })
                    }))
                }
            }
        };
        self.misses.fetch_add(1, Ordering::Relaxed);
        // Removes the cell again if it is still empty when this call ends — failed or
        // cancelled (a dropped request) alike — so unknown ids leave nothing behind.
        let guard = EmptyCellGuard {
            cache: self,
            id,
            cell,
        };
        let mut built = false;
        let result = guard
            .cell
            .pool
            .get_or_try_init(|| async {
                let pool = build().await?;
                self.created.fetch_add(1, Ordering::Relaxed);
                built = true;
                Ok(pool)
            })
            .await
            .cloned();
        if built {
            // The build may have taken a while: this pool is the most recently used now.
            guard.cell.last_used.store(self.now(), Ordering::Relaxed);
        }
        drop(guard);
        if built {
            let mut map = self.write();
            while map.values().filter(|c| c.initialized()).count() > self.max_cached {
                if !self.evict_lru(&mut map) {
                    break;
                }
            }
        }
        result
    }

    /// Removes the tenant's pool; returns whether one was cached. Connections already handed
    /// out stay usable; the pool closes when the last of them is returned.
    pub(crate) fn evict(&self, id: &TenantId) -> bool {
        let removed = self
            .write()
            .remove(id)
            .is_some_and(|cell| self.retire(&cell));
        if removed {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        removed
    }

    /// Removes the tenant's pool if `pred` holds for it; returns whether it did.
    pub(crate) fn evict_if(&self, id: &TenantId, pred: impl FnOnce(&P) -> bool) -> bool {
        let mut map = self.write();
        let matches = map.get(id).and_then(|c| c.get()).is_some_and(pred);
        let removed = matches && map.remove(id).is_some_and(|cell| self.retire(&cell));
        if removed {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        removed
    }

    /// Removes every pool.
    pub(crate) fn clear(&self) {
        let n = {
            let mut map = self.write();
            let n = map.values().filter(|c| self.retire(c)).count();
            map.clear();
            n
        };
        self.evictions.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> CacheStats {
        // One read guard: a second one taken while a writer waits (the idle reaper, a reclaim)
        // would block behind that writer, which waits for the first — a deadlock.
        let (cached_pools, entry_hits) = {
            let map = self.read();
            (
                map.values().filter(|c| c.initialized()).count(),
                map.values()
                    .map(|c| c.hits.load(Ordering::Relaxed))
                    .sum::<u64>(),
            )
        };
        CacheStats {
            cached_pools,
            hits: self.hits.load(Ordering::Relaxed) + entry_hits,
            misses: self.misses.load(Ordering::Relaxed),
            pools_created: self.created.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            ..CacheStats::default()
        }
    }

    /// Folds a removed entry's hit count into the total; returns whether it held a pool.
    fn retire(&self, cell: &Entry<P>) -> bool {
        self.hits
            .fetch_add(cell.hits.load(Ordering::Relaxed), Ordering::Relaxed);
        cell.initialized()
    }

    /// Milliseconds since the cache was made (a cheap, monotonic "last used" clock).
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Closes the least recently used built pool, preferring unused ones; returns whether one
    /// was closed.
    fn evict_lru(&self, map: &mut HashMap<TenantId, Cell<P>>) -> bool {
        let pick = |require_unused: bool| {
            map.iter()
                .filter(|(_, c)| c.get().is_some_and(|p| !require_unused || p.is_unused()))
                .min_by_key(|(_, c)| c.last_used.load(Ordering::Relaxed))
                .map(|(id, _)| id.clone())
        };
        let victim = pick(true).or_else(|| pick(false));
        match victim {
            Some(id) => {
                if let Some(cell) = map.remove(&id) {
                    self.retire(&cell);
                }
                self.evictions.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(tenant = %id, "closed a cached tenant pool");
                true
            }
            None => false,
        }
    }

    /// Closes pools unused for longer than `idle`; returns how many.
    pub(crate) fn reap_idle(&self, idle: Duration) -> usize {
        let cutoff = self
            .now()
            .saturating_sub(u64::try_from(idle.as_millis()).unwrap_or(u64::MAX));
        let mut map = self.write();
        let stale: Vec<TenantId> = map
            .iter()
            .filter(|(_, c)| {
                c.get().is_some_and(|pool| {
                    pool.is_unused()
                        && (pool.is_failing() || c.last_used.load(Ordering::Relaxed) < cutoff)
                })
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &stale {
            if let Some(cell) = map.remove(id) {
                self.retire(&cell);
            }
        }
        self.evictions
            .fetch_add(stale.len() as u64, Ordering::Relaxed);
        stale.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    fn id(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    impl CachedPool for u32 {
        fn is_unused(&self) -> bool {
            true
        }
        fn idle_connections(&self) -> u32 {
            1
        }
        fn shed_idle(&self) -> bool {
            false
        }
        /// Pool 7 stands for one whose connections fail.
        fn is_failing(&self) -> bool {
            *self == 7
        }
    }

    #[tokio::test]
    async fn failing_pools_are_reaped_however_recently_used() {
        let cache = PoolCache::<u32>::new(4);
        for (name, pool) in [("ok", 1_u32), ("failing", 7)] {
            cache
                .get_or_try_init(&id(name), || async move { Ok::<_, ()>(pool) })
                .await
                .unwrap();
        }
        assert_eq!(cache.reap_idle(Duration::from_secs(600)), 1);
        assert_eq!(cache.stats().cached_pools, 1);
    }

    /// A cache of two, holding pools for `a` then `b` (`b` used last).
    async fn warm_cache() -> PoolCache<u32> {
        let cache = PoolCache::<u32>::new(2);
        for (i, name) in ["a", "b"].into_iter().enumerate() {
            cache
                .get_or_try_init(&id(name), || async move { Ok::<_, ()>(i as u32) })
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        cache
    }

    #[tokio::test]
    async fn unknown_and_cancelled_lookups_leave_warm_pools_and_no_cells() {
        let cache = warm_cache().await;
        // Lookups of ids that turn out unknown evict nothing and leave nothing.
        for name in ["x1", "x2", "x3"] {
            let failed = cache
                .get_or_try_init(&id(name), || async { Err::<u32, _>("unknown") })
                .await;
            assert!(failed.is_err());
        }
        // A lookup whose caller goes away mid-build leaves no empty cell either.
        let slow_id = id("slow");
        let slow = cache.get_or_try_init(&slow_id, || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, ()>(7)
        });
        assert!(
            tokio::time::timeout(Duration::from_millis(20), slow)
                .await
                .is_err()
        );
        let map = cache.read();
        let mut keys: Vec<_> = map.keys().map(|k| k.to_string()).collect();
        keys.sort();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(cache.evictions.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn least_recently_used_pools_make_room() {
        let cache = warm_cache().await;
        // Touch `a`, so `b` is the least recently used.
        cache
            .get_or_try_init(&id("a"), || async { Ok::<_, ()>(9) })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(3)).await;
        cache
            .get_or_try_init(&id("c"), || async { Ok::<_, ()>(2) })
            .await
            .unwrap();
        {
            let map = cache.read();
            assert!(map.contains_key(&id("a")) && map.contains_key(&id("c")));
            assert!(!map.contains_key(&id("b")));
        }
        assert_eq!(cache.stats().evictions, 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(cache.reap_idle(Duration::from_millis(10)), 2);
        assert!(!cache.reclaim_one());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_calls_build_one_pool() {
        let cache = Arc::new(PoolCache::<u32>::new(100));
        let builds = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let cache = Arc::clone(&cache);
            let builds = Arc::clone(&builds);
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_try_init(&id("acme"), || async {
                        builds.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, ()>(7)
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(7));
        }
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        assert_eq!(cache.stats().pools_created, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_miss_does_not_block_other_tenants() {
        let cache = Arc::new(PoolCache::<u32>::new(100));
        cache
            .get_or_try_init(&id("warm"), || async { Ok::<_, ()>(1) })
            .await
            .unwrap();
        let slow = {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move {
                cache
                    .get_or_try_init(&id("cold"), || async {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        Ok::<_, ()>(2)
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let hit = tokio::time::timeout(
            Duration::from_secs(5),
            cache.get_or_try_init(&id("warm"), || async { Ok::<_, ()>(99) }),
        )
        .await
        .expect("a hit must not wait for another tenant's miss");
        assert_eq!(hit, Ok(1));
        slow.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_build_hands_over_to_a_waiter_and_keeps_one_cell() {
        let cache = Arc::new(PoolCache::<u32>::new(100));
        let attempts = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let cache = Arc::clone(&cache);
                let attempts = Arc::clone(&attempts);
                tokio::spawn(async move {
                    cache
                        .get_or_try_init(&id("flaky"), || async {
                            let n = attempts.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            if n == 0 {
                                Err("first attempt fails")
                            } else {
                                Ok(n as u32)
                            }
                        })
                        .await
                })
            })
            .collect();
        let mut ok = Vec::new();
        for t in tasks {
            if let Ok(v) = t.await.unwrap() {
                ok.push(v);
            }
        }
        assert_eq!(
            ok.len(),
            7,
            "one caller sees the failure, the others the retry"
        );
        assert!(
            ok.iter().all(|v| *v == ok[0]),
            "every waiter shares one pool: {ok:?}"
        );
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
        assert_eq!(cache.stats().cached_pools, 1);
        assert_eq!(
            cache
                .get_or_try_init(&id("flaky"), || async { Err("unused") })
                .await,
            Ok(ok[0])
        );
    }

    #[tokio::test]
    async fn failures_leave_nothing_cached_and_evict_works() {
        let cache = PoolCache::<u32>::new(100);
        let r = cache
            .get_or_try_init(&id("nope"), || async { Err::<u32, _>("unknown") })
            .await;
        assert_eq!(r, Err("unknown"));
        assert!(cache.read().is_empty());
        cache
            .get_or_try_init(&id("a"), || async { Ok::<_, ()>(1) })
            .await
            .unwrap();
        assert!(cache.evict(&id("a")));
        assert!(!cache.evict(&id("a")));
        let again = cache
            .get_or_try_init(&id("a"), || async { Ok::<_, ()>(2) })
            .await;
        assert_eq!(again, Ok(2));
        cache.clear();
        assert_eq!(cache.stats().cached_pools, 0);
        assert_eq!(cache.stats().evictions, 2);
    }
}
