//! A cheap millisecond clock for stamping cache entries on the hit path.
//!
//! `Instant::now()` reads the fine clock (`CLOCK_MONOTONIC`), about 25 ns a call on this
//! project's benchmark machine: a tenth of a whole pool checkout. Stamps only need to order
//! entries by last use and to tell minutes of idleness, so on Linux this reads
//! `CLOCK_MONOTONIC_COARSE` instead (the kernel's last tick, a few ns through the vDSO, a few
//! milliseconds of resolution). Elsewhere it falls back to `Instant`.

/// Milliseconds on a monotonic clock with an arbitrary origin (fixed for the process).
pub(crate) fn now_ms() -> u64 {
    imp::now_ms()
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use rustix::time::{ClockId, clock_gettime};

    pub(super) fn now_ms() -> u64 {
        let ts = clock_gettime(ClockId::MonotonicCoarse);
        let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
        let millis = u64::try_from(ts.tv_nsec).unwrap_or(0) / 1_000_000;
        secs.saturating_mul(1000).saturating_add(millis)
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    use std::sync::OnceLock;
    use std::time::Instant;

    pub(super) fn now_ms() -> u64 {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        let elapsed = EPOCH.get_or_init(Instant::now).elapsed();
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::now_ms;
    use std::time::Duration;

    #[test]
    fn moves_forward_with_time() {
        let before = now_ms();
        std::thread::sleep(Duration::from_millis(30));
        let after = now_ms();
        assert!(after >= before + 20, "{before} -> {after}");
        assert!(after < before + 10_000, "{before} -> {after}");
    }
}
