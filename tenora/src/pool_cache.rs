//! [`PoolCache`]: one bb8 pool per tenant, created once, shared by every caller.
//!
//! The hit path takes its shard's read lock for a table lookup and a pool clone, never across
//! an `.await`. A miss inserts an empty `OnceCell` under a short write lock and then builds the
//! pool outside the lock: concurrent first calls for one tenant wait on the same cell
//! (single-flight), and a slow miss never blocks hits or misses of other tenants. A failed build
//! removes its cell again, so lookups of unknown ids leave nothing behind.
//!
//! Hits on different tenants rarely meet: the table is split into shards by hash, each behind
//! its own lock on its own cache lines, and a hit stamps its entry with a coarse millisecond
//! clock ([`crate::coarse_clock`]) rather than the fine one.
//!
//! Making room costs the same at any cache size: built pools also wait in one eviction queue
//! (oldest stamp first). A hit only stamps its entry; when room is made, an entry at the front
//! used since it was queued goes to the back (a second chance) and the walk goes on, so taking
//! the least recently used pool is O(1) amortized, and removing it from its table is a
//! pointer comparison under the stored hash — the cold tenant id is never read again. Idle
//! reaping and budget reclaims read the tables under read locks (hits go on) and take write
//! locks only to remove what they chose. Pools leave the table under a lock but are closed
//! after every lock is released: closing a pool (on SQLite, closing its last connection may
//! checkpoint the WAL) never blocks other tenants' hits.

use std::collections::VecDeque;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Duration;

use hashbrown::HashTable;
use tokio::sync::OnceCell;

use crate::budget::Reclaim;
use crate::coarse_clock as clock;
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

/// A cache slot: the tenant, the pool (once built) and when it was last handed out.
///
/// In declaration order (`repr(C)`): what an eviction walk reads first sits on the first cache
/// line, next to the reference counts.
#[repr(C)]
pub(crate) struct Entry<P> {
    /// `id`'s hash in the cache's table (kept: growing the table and removing the entry never
    /// read the id again).
    hash: u64,
    /// The stamp under which the entry waits in the eviction queue (`NOT_QUEUED`: not yet;
    /// `TAKEN`: out of the table). Changed under the queue's lock, or swapped to `TAKEN`.
    queued: AtomicU64,
    last_used: AtomicU64,
    pool: OnceCell<P>,
    id: InlineId,
}

/// A tenant id kept inside its entry (ids are at most 63 bytes): one allocation per entry,
/// so closing the least recently used entry touches no second, cold allocation.
struct InlineId {
    len: u8,
    bytes: [u8; TenantId::MAX_LEN],
}

impl InlineId {
    fn new(id: &TenantId) -> Self {
        let source = id.as_str().as_bytes();
        // A `TenantId` is never longer (checked when it is made).
        let len = source.len().min(TenantId::MAX_LEN);
        let mut bytes = [0; TenantId::MAX_LEN];
        bytes[..len].copy_from_slice(&source[..len]);
        InlineId {
            len: len as u8,
            bytes,
        }
    }

    fn is(&self, id: &TenantId) -> bool {
        &self.bytes[..usize::from(self.len)] == id.as_str().as_bytes()
    }

    fn as_str(&self) -> &str {
        // ASCII, copied from a `TenantId`.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl std::fmt::Display for InlineId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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

/// Removes its cell from the table on drop if the cell is still empty and nobody else holds
/// it (other callers waiting on it build it in turn; the last one to give up removes it).
struct EmptyCellGuard<'a, P: CachedPool> {
    cache: &'a PoolCache<P>,
    /// Always `Some` until dropped.
    cell: Option<Cell<P>>,
}

impl<P: CachedPool> EmptyCellGuard<'_, P> {
    fn cell(&self) -> &Cell<P> {
        self.cell.as_ref().expect("set until the guard is dropped")
    }
}

impl<P: CachedPool> Drop for EmptyCellGuard<'_, P> {
    fn drop(&mut self) {
        let Some(cell) = self.cell.take() else {
            return;
        };
        if cell.get().is_some() {
            return;
        }
        let mut table = self.cache.write(cell.hash);
        let found = table.find_entry(cell.hash, |c| Arc::ptr_eq(c, &cell));
        if let Ok(entry) = found {
            // Still empty and held only by the table and this guard.
            if entry.get().get().is_none() && Arc::strong_count(entry.get()) == 2 {
                entry.remove();
            }
        }
        // Let go under the lock: of two waiters giving up at once, the second then sees
        // itself as the last holder and removes the cell.
        drop(cell);
        drop(table);
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
    /// The tenants, spread over shards by hash: hits on different shards take different
    /// locks, so cores do not pass one lock's cache line back and forth on every hit.
    shards: Box<[Shard<P>]>,
    /// Built entries, least recently queued first (see [`Queue`]).
    queue: Mutex<Queue<P>>,
    /// Built entries in the table and the queue (counted as they are queued and taken).
    built: AtomicUsize,
    /// Keys the table's hashes (SipHash with a random key: ids come from requests, so
    /// colliding ids cannot be chosen to flood one bucket).
    hasher: RandomState,
    max_cached: usize,
    hits: StripedCounter,
    misses: AtomicU64,
    created: AtomicU64,
    evictions: AtomicU64,
}

/// One shard's table, alone on its cache lines.
#[repr(align(128))]
struct Shard<P> {
    table: RwLock<HashTable<Cell<P>>>,
}

/// Shards of the cache (a power of two).
const SHARDS: usize = 16;

/// The eviction queue: every built entry once, oldest stamp first.
///
/// A hit only stamps its entry (under its shard's read lock). When room is made, an entry at
/// the front that was used since it was queued goes to the back under its new stamp (a second
/// chance) and the walk goes on, so the entry taken is the least recently used one and each
/// step is O(1) amortized. Entries taken out of the table some other way (evicted by id,
/// reaped) stay behind as dead weak references until they reach the front or the queue is
/// compacted (when they outnumber the live ones).
type Queue<P> = VecDeque<(u64, Weak<Entry<P>>)>;

/// `Entry::queued` of an entry not queued yet.
const NOT_QUEUED: u64 = u64::MAX;
/// `Entry::queued` of an entry taken out of the table (never queued again).
const TAKEN: u64 = u64::MAX - 1;

impl<P> Entry<P> {
    /// Whether this is the entry of `id`, whose hash is `hash`.
    fn is(&self, hash: u64, id: &TenantId) -> bool {
        self.hash == hash && self.id.is(id)
    }

    /// Marks the entry taken; returns whether it was counted as built (queued).
    fn mark_taken(&self) -> bool {
        let was = self.queued.swap(TAKEN, Ordering::AcqRel);
        was != NOT_QUEUED && was != TAKEN
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
    pub(crate) fn new(max_cached: usize) -> Self {
        PoolCache {
            shards: (0..SHARDS)
                .map(|_| Shard {
                    table: RwLock::new(HashTable::new()),
                })
                .collect(),
            queue: Mutex::new(VecDeque::new()),
            built: AtomicUsize::new(0),
            hasher: RandomState::new(),
            max_cached: max_cached.max(1),
            hits: StripedCounter::new(),
            misses: AtomicU64::new(0),
            created: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    fn shard(&self, hash: u64) -> &RwLock<HashTable<Cell<P>>> {
        // Bits the table itself uses least (it takes the low ones for the bucket and the top
        // seven for the tag).
        &self.shards[(hash >> 40) as usize % SHARDS].table
    }

    fn read(&self, hash: u64) -> RwLockReadGuard<'_, HashTable<Cell<P>>> {
        // A panic while holding a lock cannot leave a table inconsistent (every operation is a
        // single insert/remove), so a poisoned lock is safe to keep using.
        self.shard(hash).read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, hash: u64) -> RwLockWriteGuard<'_, HashTable<Cell<P>>> {
        self.shard(hash).write().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_queue(&self) -> MutexGuard<'_, Queue<P>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every entry in the table (built or being built), for scans that choose under read
    /// locks.
    fn entries_where(&self, mut keep: impl FnMut(&Cell<P>) -> bool) -> Vec<Cell<P>> {
        let mut chosen = Vec::new();
        for shard in self.shards.iter() {
            let table = shard.table.read().unwrap_or_else(|p| p.into_inner());
            chosen.extend(table.iter().filter(|c| keep(c)).map(Arc::clone));
        }
        chosen
    }

    /// The least recently used entry `keep` accepts, read shard by shard under read locks
    /// (one handle cloned per shard at most: hot entries' reference counts stay untouched).
    fn least_used_where(&self, keep: impl Fn(&Cell<P>) -> bool) -> Option<Cell<P>> {
        let mut best: Option<Cell<P>> = None;
        // Handles replaced by an older find, dropped after the loop (never under a lock).
        let mut passed_over = Vec::new();
        for shard in self.shards.iter() {
            let table = shard.table.read().unwrap_or_else(|p| p.into_inner());
            let found = table
                .iter()
                .filter(|c| keep(c))
                .min_by_key(|c| c.last_used.load(Ordering::Relaxed));
            let older = |c: &Cell<P>| {
                best.as_ref().is_none_or(|b| {
                    c.last_used.load(Ordering::Relaxed) < b.last_used.load(Ordering::Relaxed)
                })
            };
            if let Some(c) = found.filter(|c| older(c)) {
                passed_over.extend(best.replace(Arc::clone(c)));
            }
        }
        drop(passed_over);
        best
    }

    /// Takes `cell` out of its shard's table if it is still there; returns it (to be dropped
    /// after every lock is released).
    fn take_cell(&self, cell: &Cell<P>) -> Option<Cell<P>> {
        let mut table = self.write(cell.hash);
        let (taken, _) = table
            .find_entry(cell.hash, |c| Arc::ptr_eq(c, cell))
            .ok()?
            .remove();
        drop(table);
        if taken.mark_taken() {
            self.built.fetch_sub(1, Ordering::AcqRel);
        }
        Some(taken)
    }

    /// The entry of `id`, if the table has one.
    fn find(&self, id: &TenantId) -> Option<Cell<P>> {
        let hash = self.hasher.hash_one(id);
        self.read(hash).find(hash, |c| c.is(hash, id)).cloned()
    }

    /// [`Reclaim::reclaim_one`] among the pools `wanted` accepts. Chosen under read locks
    /// (hits go on), removed under a write lock, closed after it.
    fn reclaim_matching(&self, wanted: impl Fn(&P) -> bool) -> bool {
        let with_idle = |require_unused: bool| {
            self.least_used_where(|c| {
                c.get().is_some_and(|p| {
                    wanted(p) && p.idle_connections() > 0 && (!require_unused || p.is_unused())
                })
            })
        };
        if let Some(chosen) = with_idle(true) {
            // Still unused: a hit may have taken a connection since.
            let removed = chosen
                .get()
                .is_some_and(CachedPool::is_unused)
                .then(|| self.take_cell(&chosen))
                .flatten();
            if let Some(cell) = removed {
                self.evictions.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(tenant = %cell.id, "closed an idle tenant pool for the connection budget");
                drop(cell);
                return true;
            }
        }
        with_idle(false)
            .and_then(|cell| cell.get().map(CachedPool::shed_idle))
            .unwrap_or(false)
    }

    /// Counts a hit on `cell` and stamps it.
    fn touch(&self, cell: &Cell<P>) {
        // Written only when the clock moved: a hot tenant's entry stays a shared cache line
        // instead of bouncing between cores.
        let now = clock::now_ms();
        if cell.last_used.load(Ordering::Relaxed) != now {
            cell.last_used.store(now, Ordering::Relaxed);
        }
        self.hits.add_one();
    }

    /// The hit path without a handle: when `id`'s pool is built, runs `take` on it under its
    /// shard's read lock and returns what it gave (a hit when it gave something). `take` must
    /// not block: it runs while misses and evictions of this shard wait.
    ///
    /// Saves the hit two atomic read-modify-writes of the pool handle's count, which every
    /// core's hits on one tenant share.
    pub(crate) fn try_hit<T>(
        &self,
        id: &TenantId,
        take: impl FnOnce(&P) -> Option<T>,
    ) -> Option<T> {
        let hash = self.hasher.hash_one(id);
        let table = self.read(hash);
        let cell = table.find(hash, |c| c.is(hash, id))?;
        let taken = take(cell.get()?)?;
        self.touch(cell);
        Some(taken)
    }

    /// The tenant's pool, building it with `build` on a miss.
    pub(crate) async fn get_or_try_init<E, F, Fut>(&self, id: &TenantId, build: F) -> Result<P, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<P, E>>,
    {
        let hash = self.hasher.hash_one(id);
        let same_id = |c: &Cell<P>| c.is(hash, id);
        let cell = {
            let table = self.read(hash);
            match table.find(hash, same_id) {
                Some(cell) => {
                    if let Some(pool) = cell.get() {
                        self.touch(cell);
                        return Ok(pool.clone());
                    }
                    Arc::clone(cell)
                }
                None => {
                    drop(table);
                    // Make room only once the tenant proved real (below): a stream of unknown
                    // ids must not push warm pools out.
                    let mut table = self.write(hash);
                    let entry = table.entry(hash, same_id, |c| c.hash).or_insert_with(|| {
                        Arc::new(Entry {
                            hash,
                            queued: AtomicU64::new(NOT_QUEUED),
                            last_used: AtomicU64::new(clock::now_ms()),
                            pool: OnceCell::new(),
                            id: InlineId::new(id),
                        })
                    });
                    Arc::clone(entry.get())
                }
            }
        };
        self.misses.fetch_add(1, Ordering::Relaxed);
        // Removes the cell again if it is still empty when this call ends — failed or
        // cancelled (a dropped request) alike — so unknown ids leave nothing behind.
        let guard = EmptyCellGuard {
            cache: self,
            cell: Some(cell),
        };
        let mut built = false;
        let result = guard
            .cell()
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
            let cell = Arc::clone(guard.cell());
            drop(guard);
            cell.last_used.store(clock::now_ms(), Ordering::Relaxed);
            self.queue_and_make_room(&cell);
        }
        result
    }

    /// Queues newly built `cell` (unless it was taken out meanwhile), then closes least
    /// recently used pools while more than `max_cached` are built.
    fn queue_and_make_room(&self, cell: &Cell<P>) {
        // Every entry handle taken under the queue lock is dropped after it: the last handle
        // of an entry closes its pool.
        let mut closed = Vec::new();
        let mut graveyard = Vec::new();
        {
            let mut queue = self.lock_queue();
            let stamp = cell.last_used.load(Ordering::Relaxed);
            let queued = cell.queued.compare_exchange(
                NOT_QUEUED,
                stamp,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            if queued.is_ok() {
                let built = self.built.fetch_add(1, Ordering::AcqRel) + 1;
                queue.push_back((stamp, Arc::downgrade(cell)));
                // Dead references outnumbering live ones: drop them in one pass (amortized
                // O(1) per queued entry).
                if queue.len() > 2 * built + 64 {
                    queue.retain(|(_, weak)| match weak.upgrade() {
                        Some(c) => {
                            let q = c.queued.load(Ordering::Acquire);
                            graveyard.push(c);
                            q != NOT_QUEUED && q != TAKEN
                        }
                        None => false,
                    });
                }
            }
            while self.built.load(Ordering::Acquire) > self.max_cached {
                match self.least_recently_used(&mut queue, &mut graveyard) {
                    // Queue, then shard: the one lock order of the cache.
                    Some(victim) => {
                        closed.extend(self.take_cell(&victim));
                        graveyard.push(victim);
                    }
                    None => break,
                }
            }
        }
        self.evictions
            .fetch_add(closed.len() as u64, Ordering::Relaxed);
        for cell in &closed {
            tracing::debug!(tenant = %cell.id, "closed a cached tenant pool");
        }
        // Closed outside every lock.
        drop(closed);
        drop(graveyard);
    }

    /// The least recently used built pool, preferring one with no connection checked out,
    /// out of the queue (and counted out of the built ones); the caller takes it out of the
    /// table. Walks the queue from the front, giving entries used since they were queued a
    /// place at the back.
    fn least_recently_used(
        &self,
        queue: &mut Queue<P>,
        graveyard: &mut Vec<Cell<P>>,
    ) -> Option<Cell<P>> {
        let mut in_use = Vec::new();
        let mut victim = None;
        // Hits go on during the walk (they take no queue lock): at most one pass of second
        // chances, so a walk ends however busy the tenants are.
        let mut moves_left = queue.len();
        while let Some((stamp, weak)) = queue.pop_front() {
            let Some(cell) = weak.upgrade() else {
                continue;
            };
            if cell.queued.load(Ordering::Acquire) != stamp {
                // Taken out of the table already (dropped by the caller, after the lock).
                graveyard.push(cell);
                continue;
            }
            let used = cell.last_used.load(Ordering::Relaxed);
            if used > stamp && moves_left > 0 {
                moves_left -= 1;
                // Moves only if not taken meanwhile.
                if cell
                    .queued
                    .compare_exchange(stamp, used, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    queue.push_back((used, weak));
                }
                graveyard.push(cell);
                continue;
            }
            if cell.get().is_none_or(CachedPool::is_unused) {
                victim = Some((stamp, cell));
                break;
            }
            // Connections checked out (at most as many pools as the budget has connections).
            in_use.push((stamp, weak, cell));
        }
        if victim.is_none() && !in_use.is_empty() {
            let (stamp, _, cell) = in_use.remove(0);
            victim = Some((stamp, cell));
        }
        // The busy ones go back to the front, in their order.
        for (stamp, weak, cell) in in_use.into_iter().rev() {
            queue.push_front((stamp, weak));
            graveyard.push(cell);
        }
        let (stamp, cell) = victim?;
        // Counted out here; `take_cell` then finds it already marked.
        let claimed = cell
            .queued
            .compare_exchange(stamp, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if claimed {
            self.built.fetch_sub(1, Ordering::AcqRel);
        }
        Some(cell)
    }

    /// Removes the tenant's pool; returns whether one was cached. Connections already handed
    /// out stay usable; the pool closes when the last of them is returned.
    pub(crate) fn evict(&self, id: &TenantId) -> bool {
        self.evict_where(id, |_| true)
    }

    /// Removes the tenant's pool if it is built and `pred` holds for it; returns whether it
    /// did.
    pub(crate) fn evict_if(&self, id: &TenantId, pred: impl FnOnce(&P) -> bool) -> bool {
        self.evict_where(id, |cell| cell.get().is_some_and(pred))
    }

    /// Removes the tenant's entry (built or being built) if `pred` holds for it; returns
    /// whether a built pool left.
    fn evict_where(&self, id: &TenantId, pred: impl FnOnce(&Cell<P>) -> bool) -> bool {
        let cell = self
            .find(id)
            .filter(|c| pred(c))
            .and_then(|c| self.take_cell(&c));
        let removed = cell.as_ref().is_some_and(|cell| cell.initialized());
        if removed {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        removed
    }

    /// Removes every pool.
    pub(crate) fn clear(&self) {
        let taken: Vec<Cell<P>> = self
            .entries_where(|_| true)
            .iter()
            .filter_map(|c| self.take_cell(c))
            .collect();
        // The queue keeps their records, dead now (popped or compacted later): emptying it
        // here would also drop the record of a pool built meanwhile, which then could never
        // be chosen to make room.
        let n = taken.iter().filter(|c| c.initialized()).count();
        self.evictions.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            cached_pools: self.built.load(Ordering::Acquire),
            hits: self.hits.sum(),
            misses: self.misses.load(Ordering::Relaxed),
            pools_created: self.created.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            ..CacheStats::default()
        }
    }

    /// Closes pools unused for longer than `idle` (and failing ones); returns how many. Chosen
    /// under read locks (hits go on), removed under write locks, closed after them.
    pub(crate) fn reap_idle(&self, idle: Duration) -> usize {
        let cutoff =
            clock::now_ms().saturating_sub(u64::try_from(idle.as_millis()).unwrap_or(u64::MAX));
        let stale_now = |c: &Cell<P>| {
            c.get().is_some_and(|pool| {
                pool.is_unused()
                    && (pool.is_failing() || c.last_used.load(Ordering::Relaxed) < cutoff)
            })
        };
        let stale = self.entries_where(stale_now);
        let taken: Vec<Cell<P>> = stale
            .iter()
            // Still stale (a hit may have come since).
            .filter(|c| stale_now(c))
            .filter_map(|c| self.take_cell(c))
            .collect();
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

    /// Long enough for the coarse clock (a few ms of resolution) to move.
    async fn tick() {
        tokio::time::sleep(Duration::from_millis(12)).await;
    }

    impl<P: CachedPool> PoolCache<P> {
        /// The tenants in the table (built or being built), sorted.
        fn keys(&self) -> Vec<String> {
            let mut keys: Vec<String> = self
                .entries_where(|_| true)
                .iter()
                .map(|c| c.id.to_string())
                .collect();
            keys.sort();
            keys
        }

        fn built(&self) -> usize {
            self.built.load(Ordering::SeqCst)
        }

        /// Whether every lock of the cache is free.
        fn unlocked(&self) -> bool {
            self.queue.try_lock().is_ok() && self.shards.iter().all(|s| s.table.try_write().is_ok())
        }
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
            tick().await;
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
        assert_eq!(cache.keys(), ["a", "b"]);
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
        tick().await;
        cache
            .get_or_try_init(&id("c"), || async { Ok::<_, ()>(2) })
            .await
            .unwrap();
        assert_eq!(cache.keys(), ["a", "c"]);
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
        assert!(cache.keys().is_empty());
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
            if cache.is_some_and(|c| c.unlocked()) {
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
        tick().await;
        drop(probe(&cache, "b", &closed).await);
        tick().await;
        drop(probe(&cache, "c", &closed).await);
        assert_eq!(cache.keys(), ["a", "c"], "the busy pool stays");
        assert_eq!(cache.built(), 2);
        assert_eq!(closed.load(Ordering::SeqCst), 1, "closed outside the lock");
        // Used since it was indexed, `a` moves up; evicting it, and reaping, close unlocked.
        a.0.in_use.store(false, Ordering::SeqCst);
        drop(a);
        assert!(cache.evict(&id("a")));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(cache.reap_idle(Duration::from_millis(10)), 1);
        assert_eq!(closed.load(Ordering::SeqCst), 3);
        assert_eq!(cache.built(), 0);
        assert!(cache.keys().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn evict_if_leaves_a_pool_being_built() {
        let cache = Arc::new(PoolCache::<u32>::new(10));
        let (started, building) = tokio::sync::oneshot::channel();
        let (finish, release) = tokio::sync::oneshot::channel::<()>();
        let build = {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move {
                cache
                    .get_or_try_init(&id("slow"), || async move {
                        started.send(()).unwrap();
                        release.await.unwrap();
                        Ok::<_, ()>(5)
                    })
                    .await
            })
        };
        building.await.unwrap();
        // Nothing built yet: a conditional eviction has nothing to judge and leaves it.
        assert!(!cache.evict_if(&id("slow"), |_| true));
        assert_eq!(cache.keys(), ["slow"]);
        finish.send(()).unwrap();
        assert_eq!(build.await.unwrap(), Ok(5));
        assert_eq!(cache.built(), 1);
        assert!(cache.evict_if(&id("slow"), |pool| *pool == 5));
        assert_eq!((cache.built(), cache.keys().len()), (0, 0));
    }

    #[tokio::test]
    async fn budget_reclaims_take_the_least_recently_used_across_shards() {
        let cache = PoolCache::<u32>::new(100);
        let names: Vec<String> = (0..40).map(|i| format!("t{i:02}")).collect();
        for name in &names {
            cache
                .get_or_try_init(&id(name), || async { Ok::<_, ()>(1) })
                .await
                .unwrap();
        }
        tick().await;
        // Every tenant but the first three used again: those three go first, oldest first.
        for name in &names[3..] {
            cache
                .get_or_try_init(&id(name), || async { Ok::<_, ()>(9) })
                .await
                .unwrap();
        }
        for round in 0..3 {
            assert!(cache.reclaim_one());
            let kept = cache.keys();
            assert_eq!(kept.len(), 39 - round);
            assert!(names[3..].iter().all(|n| kept.contains(n)), "round {round}");
        }
        assert_eq!(cache.stats().cached_pools, 37);
    }

    #[tokio::test]
    async fn churn_by_id_keeps_the_queue_bounded_and_the_count_true() {
        // Ten tenants through a cache of eight: evictions by id and to make room.
        let cache = PoolCache::<u32>::new(8);
        let names: Vec<TenantId> = (0..10).map(|i| id(&format!("t{i}"))).collect();
        for round in 0..5_000_u32 {
            let tenant = &names[round as usize % names.len()];
            cache
                .get_or_try_init(tenant, || async move { Ok::<_, ()>(round) })
                .await
                .unwrap();
            if round % 3 == 0 {
                assert!(cache.evict(tenant));
            }
            assert!(cache.built() <= 8);
            let queued = cache.lock_queue().len();
            assert!(queued <= 2 * 8 + 65, "{queued}");
        }
        assert_eq!(cache.built(), cache.keys().len());
        assert_eq!(cache.stats().cached_pools, cache.keys().len());
        // Reaping and clearing keep the count true as well.
        tick().await;
        let cached = cache.keys().len();
        assert_eq!(cache.reap_idle(Duration::from_millis(1)), cached);
        assert_eq!(cache.built(), 0);
        cache
            .get_or_try_init(&names[0], || async { Ok::<_, ()>(1) })
            .await
            .unwrap();
        cache.clear();
        assert_eq!(cache.built(), 0);
        assert!(cache.keys().is_empty());
    }

    #[tokio::test]
    async fn the_index_follows_hits_without_touching_it_on_the_hit_path() {
        let cache = PoolCache::<u32>::new(3);
        for name in ["a", "b", "c"] {
            cache
                .get_or_try_init(&id(name), || async { Ok::<_, ()>(1) })
                .await
                .unwrap();
            tick().await;
        }
        // Hits on `a` and `b` (only their stamps change), then a fourth tenant: `c`, the one
        // not used since, makes room.
        for name in ["a", "b"] {
            cache
                .get_or_try_init(&id(name), || async { Ok::<_, ()>(9) })
                .await
                .unwrap();
            tick().await;
        }
        cache
            .get_or_try_init(&id("d"), || async { Ok::<_, ()>(1) })
            .await
            .unwrap();
        assert_eq!(cache.keys(), ["a", "b", "d"]);
        assert_eq!(cache.built(), 3);
        // Every built pool is queued once, under its own stamp.
        let queue = cache.lock_queue();
        let live: Vec<_> = queue
            .iter()
            .filter_map(|(stamp, weak)| Some((*stamp, weak.upgrade()?)))
            .filter(|(stamp, c)| c.queued.load(Ordering::Relaxed) == *stamp)
            .collect();
        assert_eq!(live.len(), 3);
        let mut ids: Vec<String> = live.iter().map(|(_, c)| c.id.to_string()).collect();
        ids.sort();
        assert_eq!(ids, ["a", "b", "d"]);
    }
}
