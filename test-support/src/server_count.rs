//! [`Counter`]: counts client connections on the server itself, where its limit is enforced,
//! never with the counter of the code under test.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mysql_async::prelude::Queryable as _;

use crate::{Made, Server, block_on, mysql_connect, pg_connect};

/// Samples, on its own thread and connection, how many client connections a server holds —
/// all of them but its own, or only those to databases named in a [`Made`] — and keeps the
/// peak until it is stopped (or dropped).
pub struct Counter {
    peak: Arc<AtomicU32>,
    at_peak: Arc<Mutex<Vec<String>>>,
    last: Arc<AtomicU32>,
    samples: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    error: Arc<Mutex<Option<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Counter {
    /// Starts sampling the server at `admin_url` every 2 ms; `scope` `None` counts every
    /// client connection but the counter's own.
    pub fn start(server: Server, admin_url: &str, scope: Option<Made>) -> Counter {
        Self::start_every(Duration::from_millis(2), server, admin_url, scope)
    }

    /// Like [`start`](Self::start), sampling every `every` (each sample is a query on the
    /// server: a benchmark samples less often so as not to slow the server it measures).
    pub fn start_every(
        every: Duration,
        server: Server,
        admin_url: &str,
        scope: Option<Made>,
    ) -> Counter {
        let peak = Arc::new(AtomicU32::new(0));
        let at_peak = Arc::new(Mutex::new(Vec::new()));
        let last = Arc::new(AtomicU32::new(0));
        let samples = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let error = Arc::new(Mutex::new(None));
        let url = admin_url.to_owned();
        // Signalled after the first sample, or dropped when sampling fails.
        let (ready, started) = std::sync::mpsc::channel::<()>();
        let thread = {
            let (peak, at_peak, last, samples, stop, error) = (
                Arc::clone(&peak),
                Arc::clone(&at_peak),
                Arc::clone(&last),
                Arc::clone(&samples),
                Arc::clone(&stop),
                Arc::clone(&error),
            );
            std::thread::spawn(move || {
                let result = block_on(async move {
                    let mut sampler = Sampler::connect(server, &url).await?;
                    while !stop.load(Ordering::Relaxed) {
                        let (n, seen) = sampler.count(scope.as_ref()).await?;
                        if peak.fetch_max(n, Ordering::Relaxed) < n {
                            *at_peak.lock().unwrap() = seen;
                        }
                        last.store(n, Ordering::Relaxed);
                        samples.fetch_add(1, Ordering::Relaxed);
                        let _ = ready.send(());
                        tokio::time::sleep(every).await;
                    }
                    Ok::<_, String>(())
                });
                if let Err(e) = result {
                    *error.lock().unwrap() = Some(e);
                }
            })
        };
        // Sampling runs before the test goes on.
        let _ = started.recv();
        Counter {
            peak,
            at_peak,
            last,
            samples,
            stop,
            error,
            thread: Some(thread),
        }
    }

    /// The highest count sampled so far; panics if sampling failed.
    pub fn peak(&self) -> u32 {
        if let Some(e) = self.error.lock().unwrap().as_ref() {
            panic!("counting connections on the server failed: {e}");
        }
        self.peak.load(Ordering::Relaxed)
    }

    /// Waits (up to `timeout`) until the server shows no connection in scope, then forgets the
    /// peak so far; panics if connections stay.
    pub fn settle(&self, timeout: Duration) {
        let n = self.wait_for(timeout, |n| n == 0);
        assert_eq!(n, 0, "{n} connections stayed open on the server");
        self.peak.store(0, Ordering::Relaxed);
    }

    /// What the server said of each connection counted at the peak (database, user,
    /// application, state), to tell where an overrun came from.
    pub fn at_peak(&self) -> Vec<String> {
        self.at_peak.lock().unwrap().clone()
    }

    /// The count of the latest sample.
    pub fn last(&self) -> u32 {
        self.last.load(Ordering::Relaxed)
    }

    /// How many samples were taken.
    pub fn samples(&self) -> u32 {
        self.samples.load(Ordering::Relaxed)
    }

    /// Waits until a sample taken after this call satisfies `pred`, for up to `timeout`;
    /// returns that count, or the last one.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(u32) -> bool) -> u32 {
        let start = std::time::Instant::now();
        let from = self.samples();
        loop {
            let n = self.last();
            if self.samples() > from && pred(n) || start.elapsed() > timeout {
                return n;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops sampling; returns the peak.
    pub fn stop(mut self) -> u32 {
        self.halt();
        self.peak()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.halt();
    }
}

enum Sampler {
    Postgres(tokio_postgres::Client),
    Mysql(mysql_async::Conn),
}

impl Sampler {
    async fn connect(server: Server, url: &str) -> Result<Self, String> {
        Ok(match server {
            Server::Postgres => Sampler::Postgres(pg_connect(url).await),
            Server::Mysql => Sampler::Mysql(mysql_connect(url).await),
        })
    }

    /// The database and a description of every client connection but this one.
    async fn connections(&mut self) -> Result<Vec<(Option<String>, String)>, String> {
        match self {
            Sampler::Postgres(client) => client
                .query(
                    "SELECT datname::text, concat_ws(' ', datname, usename, application_name, \
                     state) FROM pg_stat_activity \
                     WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                    &[],
                )
                .await
                .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
                .map_err(|e| e.to_string()),
            Sampler::Mysql(conn) => conn
                .query(
                    "SELECT db, CONCAT_WS(' ', db, user, command, state) \
                     FROM information_schema.processlist \
                     WHERE id <> CONNECTION_ID() AND command <> 'Daemon'",
                )
                .await
                .map_err(|e| e.to_string()),
        }
    }

    async fn count(&mut self, scope: Option<&Made>) -> Result<(u32, Vec<String>), String> {
        let seen: Vec<String> = self
            .connections()
            .await?
            .into_iter()
            .filter(|(db, _)| match (scope, db) {
                (None, _) => true,
                (Some(made), Some(db)) => made.database_matches(db),
                (Some(_), None) => false,
            })
            .map(|(_, what)| what)
            .collect();
        Ok((u32::try_from(seen.len()).unwrap_or(u32::MAX), seen))
    }
}

/// The server's ids of the client connections to `database` right now (PostgreSQL backend
/// pids, MySQL connection ids), sorted: a connection opened in between shows as a new id.
pub async fn connection_ids(server: Server, admin_url: &str, database: &str) -> Vec<u64> {
    let mut ids: Vec<u64> = match server {
        Server::Postgres => pg_connect(admin_url)
            .await
            .query(
                "SELECT pid::int8 FROM pg_stat_activity WHERE datname = $1",
                &[&database],
            )
            .await
            .expect("list connections")
            .iter()
            .map(|r| r.get::<_, i64>(0) as u64)
            .collect(),
        Server::Mysql => {
            let mut conn = mysql_connect(admin_url).await;
            let ids = conn
                .exec(
                    "SELECT id FROM information_schema.processlist WHERE db = ?",
                    (database,),
                )
                .await
                .expect("list connections");
            let _ = conn.disconnect().await;
            ids
        }
    };
    ids.sort_unstable();
    ids
}
