//! [`PoolCache`]: one bb8 pool per tenant, created once, shared by every caller.
//!
//! The hit path takes a read lock for a map lookup and an `Arc` clone, never across an
//! `.await`. A miss inserts an empty `OnceCell` under a short write lock and then builds the
//! pool outside the lock: concurrent first calls for one tenant wait on the same cell
//! (single-flight), and a slow miss never blocks hits or misses of other tenants. A failed build
//! removes its cell again, so lookups of unknown ids leave nothing behind.
//!
//! Making room costs the same at any cache size: built pools are also kept in an index ordered
//! by when they were last handed out. A hit only stamps its entry (under the read lock); the
//! index catches up lazily when room is made — an entry found with a newer stamp than its
//! index key moves to its place and the walk goes on — so taking the least recently used pool
//! is O(log n) amortized. Idle reaping and budget reclaims read the whole cache under the read
//! lock (hits go on) and take the write lock only to remove what they chose. Pools leave the
//! map under the lock but are closed after it is released: closing a pool (on SQLite, closing
//! its last connection may checkpoint the WAL) never blocks other tenants' hits.

use std::collections::{BTreeMap, HashMap};
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
    /// The stamp under which the entry is in the index (`u64::MAX`: not indexed). Read and
    /// written only under the write lock.
    indexed: AtomicU64,
    /// The entry's own number: with the stamp, its key in the index (many entries share a
    /// millisecond; numbers keep the index's comparisons to integers, never tenant names).
    seq: u64,
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
        let mut inner = self.cache.write();
        let ours_and_unused = inner.map.get(self.id).is_some_and(|c| {
            Arc::ptr_eq(c, &self.cell) && c.get().is_none() && Arc::strong_count(c) == 2
        });
        if ours_and_unused {
            inner.map.remove(self.id);
        }
    }
}

/// A counter bumped on the hit path: one cache line per stripe, each thread on its own stripe,
/// so cores do not fight over one line (a single tenant's entry would be one, too).
struct StripedCounter {
    stripes: [Stripe; STRIPES],
}

/// Stripes of a [`StripedCounter`].
const STRIPES: usize = 8;

#[repr(align(128))]
#[derive(Default)]
struct Stripe(AtomicU64);

impl StripedCounter {
    fn new() -> Self {
        StripedCounter {
            stripes: Default::default(),
        }
    }

    fn add_one(&self) {
        thread_local! {
            static STRIPE: usize = {
                static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
                NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES
            };
        }
        let stripe = STRIPE.with(|s| *s);
        self.stripes[stripe].0.fetch_add(1, Ordering::Relaxed);
    }

    fn sum(&self) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum()
    }
}

/// A map from tenant to pool with single-flight creation.
pub(crate) struct PoolCache<P> {
    inner: RwLock<Inner<P>>,
    epoch: Instant,
    max_cached: usize,
    hits: StripedCounter,
    misses: AtomicU64,
    created: AtomicU64,
    evictions: AtomicU64,
}

/// The map and its least-recently-used index (built pools only, by stamp, then entry number).
struct Inner<P> {
    map: HashMap<TenantId, Cell<P>>,
    lru: BTreeMap<(u64, u64), TenantId>,
    /// The next entry's number.
    next_seq: u64,
}

/// A stamp meaning "not in the index".
const NOT_INDEXED: u64 = u64::MAX;

impl<P: CachedPool> Inner<P> {
    /// Removes `id`'s entry from the map and the index; the caller drops it after releasing
    /// the lock.
    fn take(&mut self, id: &TenantId) -> Option<Cell<P>> {
        let cell = self.map.remove(id)?;
        let stamp = cell.indexed.swap(NOT_INDEXED, Ordering::Relaxed);
        if stamp != NOT_INDEXED {
            self.lru.remove(&(stamp, cell.seq));
        }
        Some(cell)
    }

    /// Puts built entry `cell` of `id` in the index under its current stamp.
    fn index(&mut self, id: &TenantId, cell: &Entry<P>) {
        let stamp = cell.last_used.load(Ordering::Relaxed);
        let old = cell.indexed.swap(stamp, Ordering::Relaxed);
        if old != NOT_INDEXED {
            self.lru.remove(&(old, cell.seq));
        }
        self.lru.insert((stamp, cell.seq), id.clone());
    }

    /// The least recently used built pool, preferring one with no connection checked out:
    /// walks the index from the oldest stamp, moving entries used since they were indexed.
    fn least_recently_used(&mut self) -> Option<TenantId> {
        let mut in_use = Vec::new();
        let victim = loop {
            let Some(((stamp, seq), id)) = self.lru.pop_first() else {
                break None;
            };
            let Some(cell) = self.map.get(&id) else {
                continue;
            };
            let used = cell.last_used.load(Ordering::Relaxed);
            if used > stamp {
                cell.indexed.store(used, Ordering::Relaxed);
                self.lru.insert((used, seq), id);
                continue;
            }
            if cell.get().is_none_or(CachedPool::is_unused) {
                // Back in the index: `take` removes it with the entry.
                self.lru.insert((stamp, seq), id.clone());
                break Some(id);
            }
            // Connections checked out (at most as many pools as the budget has connections).
            in_use.push(((stamp, seq), id));
        };
        let victim = victim.or_else(|| in_use.first().map(|(_, id)| id.clone()));
        self.lru.extend(in_use);
        victim
    }

    fn built(&self) -> usize {
        self.lru.len()
    }
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
    /// [`Reclaim::reclaim_one`] among the pools `wanted` accepts. Chosen under the read lock
    /// (hits go on), removed under the write lock, closed after it.
    fn reclaim_matching(&self, wanted: impl Fn(&P) -> bool) -> bool {
        let with_idle = |require_unused: bool| {
            let inner = self.read();
            inner
                .map
                .iter()
                .filter(|(_, c)| {
                    c.get().is_some_and(|p| {
                        wanted(p) && p.idle_connections() > 0 && (!require_unused || p.is_unused())
                    })
                })
                .min_by_key(|(_, c)| c.last_used.load(Ordering::Relaxed))
                .map(|(id, c)| (id.clone(), Arc::clone(c)))
        };
        if let Some((id, chosen)) = with_idle(true) {
            let removed = {
                let mut inner = self.write();
                // Still the same pool, still unused: a hit may have taken a connection since.
                let same = inner.map.get(&id).is_some_and(|c| {
                    Arc::ptr_eq(c, &chosen) && c.get().is_some_and(CachedPool::is_unused)
                });
                if same { inner.take(&id) } else { None }
            };
            if let Some(cell) = removed {
                self.evictions.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(tenant = %id, "closed an idle tenant pool for the connection budget");
                drop(cell);
                return true;
            }
        }
        with_idle(false)
            .and_then(|(_, cell)| cell.get().map(CachedPool::shed_idle))
            .unwrap_or(false)
    }
}

impl<P: CachedPool> PoolCache<P> {
    pub(crate) fn new(max_cached: usize) -> Self {
        PoolCache {
            inner: RwLock::new(Inner {
                map: HashMap::new(),
                lru: BTreeMap::new(),
                next_seq: 0,
            }),
            epoch: Instant::now(),
            max_cached: max_cached.max(1),
            hits: StripedCounter::new(),
            misses: AtomicU64::new(0),
            created: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner<P>> {
        // A panic while holding the lock cannot leave the map inconsistent (every operation is
        // a single insert/remove), so a poisoned lock is safe to keep using.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner<P>> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The tenant's pool, building it with `build` on a miss.
    pub(crate) async fn get_or_try_init<E, F, Fut>(&self, id: &TenantId, build: F) -> Result<P, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<P, E>>,
    {
        let cell = {
            let inner = self.read();
            match inner.map.get(id) {
                Some(cell) => {
                    if let Some(pool) = cell.get() {
                        // Written only when the clock moved: a hot tenant's entry stays a
                        // shared cache line instead of bouncing between cores.
                        let now = self.now();
                        if cell.last_used.load(Ordering::Relaxed) != now {
                            cell.last_used.store(now, Ordering::Relaxed);
                        }
                        self.hits.add_one();
                        return Ok(pool.clone());
                    }
                    Arc::clone(cell)
                }
                None => {
                    drop(inner);
                    // Make room only once the tenant proved real (below): a stream of unknown
                    // ids must not push warm pools out.
                    let mut inner = self.write();
                    let now = self.now();
                    let seq = inner.next_seq;
                    inner.next_seq += 1;
                    Arc::clone(inner.map.entry(id.clone()).or_insert_with(|| {
                        Arc::new(Entry {
                            pool: OnceCell::new(),
                            last_used: AtomicU64::new(now),
                            indexed: AtomicU64::new(NOT_INDEXED),
                            seq,
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
        // (Held only when built: the guard removes an empty cell it alone holds.)
        let cell = built.then(|| Arc::clone(&guard.cell));
        drop(guard);
        if let Some(cell) = cell {
            let mut closed = Vec::new();
            {
                let mut inner = self.write();
                // Indexed unless evicted meanwhile.
                if inner.map.get(id).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                    inner.index(id, &cell);
                }
                while inner.built() > self.max_cached {
                    match self.evict_lru(&mut inner) {
                        Some(cell) => closed.push(cell),
                        None => break,
                    }
                }
            }
            // Closed outside the lock.
            drop(closed);
        }
        result
    }

    /// Removes the tenant's pool; returns whether one was cached. Connections already handed
    /// out stay usable; the pool closes when the last of them is returned.
    pub(crate) fn evict(&self, id: &TenantId) -> bool {
        let cell = self.write().take(id);
        let removed = cell.as_ref().is_some_and(|cell| cell.initialized());
        if removed {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        removed
    }

    /// Removes the tenant's pool if `pred` holds for it; returns whether it did.
    pub(crate) fn evict_if(&self, id: &TenantId, pred: impl FnOnce(&P) -> bool) -> bool {
        let cell = {
            let mut inner = self.write();
            let matches = inner.map.get(id).and_then(|c| c.get()).is_some_and(pred);
            if matches { inner.take(id) } else { None }
        };
        let removed = cell.as_ref().is_some_and(|cell| cell.initialized());
        if removed {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        removed
    }

    /// Removes every pool.
    pub(crate) fn clear(&self) {
        let taken: Vec<Cell<P>> = {
            let mut inner = self.write();
            inner.lru.clear();
            inner.map.drain().map(|(_, cell)| cell).collect()
        };
        let n = taken.iter().filter(|c| c.initialized()).count();
        self.evictions.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let cached_pools = self.read().built();
        CacheStats {
            cached_pools,
            hits: self.hits.sum(),
            misses: self.misses.load(Ordering::Relaxed),
            pools_created: self.created.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            ..CacheStats::default()
        }
    }

    /// Milliseconds since the cache was made (a cheap, monotonic "last used" clock).
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Removes the least recently used built pool, preferring unused ones; returns it (to be
    /// dropped after the lock is released).
    fn evict_lru(&self, inner: &mut Inner<P>) -> Option<Cell<P>> {
        let id = inner.least_recently_used()?;
        let cell = inner.take(&id)?;
        self.evictions.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(tenant = %id, "closed a cached tenant pool");
        Some(cell)
    }

    /// Closes pools unused for longer than `idle` (and failing ones); returns how many. Chosen
    /// under the read lock (hits go on), removed under the write lock, closed after it.
    pub(crate) fn reap_idle(&self, idle: Duration) -> usize {
        let cutoff = self
            .now()
            .saturating_sub(u64::try_from(idle.as_millis()).unwrap_or(u64::MAX));
        let stale_now = |c: &Entry<P>| {
            c.get().is_some_and(|pool| {
                pool.is_unused()
                    && (pool.is_failing() || c.last_used.load(Ordering::Relaxed) < cutoff)
            })
        };
        let stale: Vec<(TenantId, Cell<P>)> = {
            let inner = self.read();
            inner
                .map
                .iter()
                .filter(|(_, c)| stale_now(c))
                .map(|(id, c)| (id.clone(), Arc::clone(c)))
                .collect()
        };
        if stale.is_empty() {
            return 0;
        }
        let taken: Vec<Cell<P>> = {
            let mut inner = self.write();
            stale
                .iter()
                .filter_map(|(id, chosen)| {
                    // Still the same pool and still stale (a hit may have come since).
                    let same = inner
                        .map
                        .get(id)
                        .is_some_and(|c| Arc::ptr_eq(c, chosen) && stale_now(c));
                    if same { inner.take(id) } else { None }
                })
                .collect()
        };
        drop(stale);
        self.evictions
            .fetch_add(taken.len() as u64, Ordering::Relaxed);
        taken.len()
    }
}

/// The cache with a stand-in pool (no connections), for the benchmark's cost-at-any-size
/// figures: not part of the API.
#[doc(hidden)]
pub mod bench {
    use super::{CachedPool, PoolCache};
    use crate::tenant_id::TenantId;

    /// A pool that holds nothing and is never in use.
    #[derive(Clone, Copy, Debug)]
    pub struct StandIn;

    impl CachedPool for StandIn {
        fn is_unused(&self) -> bool {
            true
        }
        fn idle_connections(&self) -> u32 {
            0
        }
        fn shed_idle(&self) -> bool {
            false
        }
    }

    /// A pool cache of stand-in pools holding at most `max` of them.
    pub struct Cache(PoolCache<StandIn>);

    impl Cache {
        /// An empty cache.
        pub fn new(max: usize) -> Self {
            Cache(PoolCache::new(max))
        }

        /// A hit, or a miss that builds a stand-in (making room when full).
        pub async fn get(&self, id: &TenantId) -> StandIn {
            self.0
                .get_or_try_init(id, || async { Ok::<_, ()>(StandIn) })
                .await
                .unwrap_or(StandIn)
        }

        /// Removes `id`'s pool.
        pub fn evict(&self, id: &TenantId) -> bool {
            self.0.evict(id)
        }

        /// Pools cached.
        pub fn len(&self) -> usize {
            self.0.stats().cached_pools
        }

        /// Whether none is cached.
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }
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
        let inner = cache.read();
        let mut keys: Vec<_> = inner.map.keys().map(|k| k.to_string()).collect();
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
            let inner = cache.read();
            let map = &inner.map;
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
        assert!(cache.read().map.is_empty());
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

    /// A pool that, when closed, records whether the cache's lock was free, and whether it
    /// counts as in use.
    #[derive(Clone)]
    struct Probe(Arc<ProbeState>);

    struct ProbeState {
        cache: std::sync::OnceLock<std::sync::Weak<PoolCache<Probe>>>,
        in_use: std::sync::atomic::AtomicBool,
        closed_unlocked: Arc<AtomicUsize>,
    }

    impl Drop for ProbeState {
        fn drop(&mut self) {
            let cache = self.cache.get().and_then(std::sync::Weak::upgrade);
            if cache.is_some_and(|c| c.inner.try_write().is_ok()) {
                self.closed_unlocked.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    impl CachedPool for Probe {
        fn is_unused(&self) -> bool {
            !self.0.in_use.load(Ordering::SeqCst)
        }
        fn idle_connections(&self) -> u32 {
            1
        }
        fn shed_idle(&self) -> bool {
            false
        }
    }

    async fn probe(cache: &Arc<PoolCache<Probe>>, name: &str, closed: &Arc<AtomicUsize>) -> Probe {
        let weak = Arc::downgrade(cache);
        let closed = Arc::clone(closed);
        cache
            .get_or_try_init(&id(name), || async move {
                let state = ProbeState {
                    cache: std::sync::OnceLock::new(),
                    in_use: std::sync::atomic::AtomicBool::new(false),
                    closed_unlocked: closed,
                };
                let _ = state.cache.set(weak);
                Ok::<_, ()>(Probe(Arc::new(state)))
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn pools_close_after_the_lock_is_released_and_busy_ones_stay() {
        let cache = Arc::new(PoolCache::<Probe>::new(2));
        let closed = Arc::new(AtomicUsize::new(0));
        // `a` is the oldest but has a connection checked out; `b` is unused.
        let a = probe(&cache, "a", &closed).await;
        a.0.in_use.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(3)).await;
        drop(probe(&cache, "b", &closed).await);
        tokio::time::sleep(Duration::from_millis(3)).await;
        drop(probe(&cache, "c", &closed).await);
        {
            let inner = cache.read();
            assert!(inner.map.contains_key(&id("a")), "the busy pool stays");
            assert!(!inner.map.contains_key(&id("b")));
            assert_eq!(inner.built(), 2);
        }
        assert_eq!(closed.load(Ordering::SeqCst), 1, "closed outside the lock");
        // Used since it was indexed, `a` moves up; evicting it, and reaping, close unlocked.
        a.0.in_use.store(false, Ordering::SeqCst);
        drop(a);
        assert!(cache.evict(&id("a")));
        tokio::time::sleep(Duration::from_millis(15)).await;
        assert_eq!(cache.reap_idle(Duration::from_millis(10)), 1);
        assert_eq!(closed.load(Ordering::SeqCst), 3);
        assert_eq!(cache.read().built(), 0);
        assert!(cache.read().lru.is_empty());
    }

    #[tokio::test]
    async fn the_index_follows_hits_without_touching_it_on_the_hit_path() {
        let cache = PoolCache::<u32>::new(3);
        for name in ["a", "b", "c"] {
            cache
                .get_or_try_init(&id(name), || async { Ok::<_, ()>(1) })
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        // Hits on `a` and `b` (only their stamps change), then a fourth tenant: `c`, the one
        // not used since, makes room.
        for name in ["a", "b"] {
            cache
                .get_or_try_init(&id(name), || async { Ok::<_, ()>(9) })
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        cache
            .get_or_try_init(&id("d"), || async { Ok::<_, ()>(1) })
            .await
            .unwrap();
        let inner = cache.read();
        let mut kept: Vec<String> = inner.map.keys().map(ToString::to_string).collect();
        kept.sort();
        assert_eq!(kept, ["a", "b", "d"]);
        assert_eq!(inner.lru.len(), 3);
        // Every built pool is indexed under its own stamp.
        for ((stamp, _), tenant) in &inner.lru {
            assert_eq!(inner.map[tenant].indexed.load(Ordering::Relaxed), *stamp);
        }
    }
}
