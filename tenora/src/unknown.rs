//! Negative cache: tenant ids recently found unknown (or not `active`), so a burst of requests
//! for them costs a bounded number of registry queries.
//!
//! Entries live `pool_cache.unknown_tenant_ttl` seconds; the cache holds at most
//! [`MAX_ENTRIES`] ids (when full, expired ids go first, then all of them: it only ever costs a
//! query). `create_tenant` in this process forgets the id at once; another process's new
//! tenant is seen at the latest after the TTL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::registry::TenantState;
use crate::tenant_id::TenantId;

/// Most ids remembered at once.
pub(crate) const MAX_ENTRIES: usize = 10_000;

/// Recently unknown tenants, with their state when they were registered but not `active`.
pub(crate) struct UnknownTenants {
    ttl: Duration,
    seen: Mutex<HashMap<TenantId, (Instant, Option<TenantState>)>>,
}

impl UnknownTenants {
    /// A cache keeping entries for `ttl` (zero: remembers nothing).
    pub(crate) fn new(ttl: Duration) -> Self {
        UnknownTenants {
            ttl,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(state)` when `id` was found unknown within the TTL (`state`: not `active`).
    pub(crate) fn get(&self, id: &TenantId) -> Option<Option<TenantState>> {
        if self.ttl.is_zero() {
            return None;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match seen.get(id) {
            Some((at, state)) if at.elapsed() < self.ttl => Some(*state),
            Some(_) => {
                seen.remove(id);
                None
            }
            None => None,
        }
    }

    /// Remembers that `id` is unknown (`state`: registered but not `active`).
    pub(crate) fn remember(&self, id: &TenantId, state: Option<TenantState>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_ENTRIES {
            seen.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if seen.len() >= MAX_ENTRIES {
                seen.clear();
            }
        }
        seen.insert(id.clone(), (Instant::now(), state));
    }

    /// Forgets `id` (it was just created, or is being looked at again on purpose).
    pub(crate) fn forget(&self, id: &TenantId) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_for_the_ttl_and_stays_bounded() {
        let id = |s: &str| TenantId::new(s).unwrap();
        let cache = UnknownTenants::new(Duration::from_secs(60));
        assert_eq!(cache.get(&id("acme")), None);
        cache.remember(&id("acme"), None);
        cache.remember(&id("globex"), Some(TenantState::Deleting));
        assert_eq!(cache.get(&id("acme")), Some(None));
        assert_eq!(cache.get(&id("globex")), Some(Some(TenantState::Deleting)));
        cache.forget(&id("acme"));
        assert_eq!(cache.get(&id("acme")), None);
        for n in 0..MAX_ENTRIES + 5 {
            cache.remember(&id(&format!("t{n}")), None);
        }
        assert!(cache.seen.lock().unwrap().len() <= MAX_ENTRIES);

        let off = UnknownTenants::new(Duration::ZERO);
        off.remember(&id("acme"), None);
        assert_eq!(off.get(&id("acme")), None);
    }
}
