//! Crash points for tests: with the `failpoints` cargo feature, `TENORA_FAILPOINT` names a
//! point where the process stops:
//! - `<point>`: abort (not unwind) there, the way `kill -9` or a power cut would stop it;
//! - `<point>#<n>`: abort the `n`-th time the process reaches it (e.g. after 100 rows);
//! - `<point>:pause=<path>`: print that the point is reached, then wait there until the file
//!   `<path>` exists (a barrier for tests of work that is in progress).
//!
//! Without the feature every point compiles to nothing. The points are named after the
//! provisioning and dropping [`Step`](crate::Step) just done ([`Step::key`](crate::Step::key)):
//! `TENORA_FAILPOINT=create_database` aborts right after the tenant's database was created,
//! before anything records it.

/// Stops the process as `TENORA_FAILPOINT` says when it names `point` (feature `failpoints`).
#[cfg(feature = "failpoints")]
pub(crate) fn reached(point: &str) {
    static CHOSEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let Some(chosen) = CHOSEN.get_or_init(|| std::env::var("TENORA_FAILPOINT").ok()) else {
        return;
    };
    let (name, pause) = match chosen.split_once(":pause=") {
        Some((name, path)) => (name, Some(path)),
        None => (chosen.as_str(), None),
    };
    let (name, nth) = match name.split_once('#') {
        Some((name, n)) => (name, n.parse::<usize>().unwrap_or(1)),
        None => (name, 1),
    };
    if name != point {
        return;
    }
    static HITS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    if HITS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 < nth {
        return;
    }
    match pause {
        None => {
            eprintln!("tenora: failpoint `{point}` reached; aborting the process");
            std::process::abort();
        }
        Some(path) => {
            eprintln!("tenora: failpoint `{point}` reached; paused until {path} exists");
            while !std::path::Path::new(path).exists() {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

/// Does nothing: built without the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn reached(_point: &str) {}
