//! Drives the real `tenora` binary against SQLite and PostgreSQL in temporary project folders.
//!
//! PostgreSQL runs need `TENORA_TEST_PG_URL` (an admin URL); without it they skip loudly, and
//! with `CI` set they fail. Snapshots live in `tests/snapshots/`; set
//! `TENORA_UPDATE_SNAPSHOTS=1` to rewrite them after an intended change.

mod crash;
mod keys;
mod pooler;
mod project;
mod runs;
mod scenario;
mod servers;
mod snapshots;
mod status;
