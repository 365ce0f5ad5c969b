//! Metrics reach the installed recorder, with tenant labels only when asked for. The recorder
//! is the process's global one (Tenora's provisioning runs on its own tasks, which a
//! thread-local recorder would not see); other tests' events land in it too, so this test
//! looks only at series of its own tenants.

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};
use tenora::TenantId;
use tenora::backend::Sqlite;

use crate::support::backends::{TestBackend, tenora_with};

fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: std::sync::OnceLock<Snapshotter> = std::sync::OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this test binary");
        snapshotter
    })
}

type Snapshot = Vec<(CompositeKey, u64)>;

/// Every counter and its value since the last snapshot (taking one resets the counters).
fn snapshot() -> Snapshot {
    snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n) => Some((key, n)),
            _ => None,
        })
        .collect()
}

/// The counters named `name` whose labels include every pair of `labels`.
fn counters(snap: &Snapshot, name: &str, labels: &[(&str, &str)]) -> Vec<(CompositeKey, u64)> {
    snap.iter()
        .filter(|(key, _)| {
            key.kind() == MetricKind::Counter
                && key.key().name() == name
                && labels
                    .iter()
                    .all(|(k, v)| key.key().labels().any(|l| l.key() == *k && l.value() == *v))
        })
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_counted_with_tenant_labels_only_when_asked() {
    snapshotter();
    let token = tenora_test_support::unique_token();
    let labelled = TenantId::new(format!("lab{token}")).unwrap();
    let plain = TenantId::new(format!("pln{token}")).unwrap();

    let env = Sqlite::env().unwrap();
    let mut config = env.config.clone();
    config.metrics.tenant_labels = true;
    let t = tenora_with::<Sqlite>(config, Sqlite::tenant_migrations()).await;
    t.create_tenant(&labelled, None).await.unwrap();
    assert!(t.create_tenant(&labelled, None).await.is_err());
    t.migrate_tenant(&labelled).await.unwrap();
    t.drop_tenant(&labelled).await.unwrap();
    let tenant = ("tenant", labelled.as_str());
    let snap = snapshot();
    let one = |name: &str, labels: &[(&str, &str)]| {
        let found = counters(&snap, name, labels);
        assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
        found[0].1
    };
    assert_eq!(
        one(
            "tenora_tenant_creations_total",
            &[tenant, ("outcome", "ok")]
        ),
        1
    );
    assert_eq!(
        one(
            "tenora_tenant_creations_total",
            &[tenant, ("outcome", "exists")]
        ),
        1
    );
    // Created (migrations applied) and migrated again (nothing pending).
    assert_eq!(
        one(
            "tenora_migration_runs_total",
            &[tenant, ("database", "tenant"), ("outcome", "ok")]
        ),
        2
    );
    assert!(one("tenora_migrations_applied_total", &[tenant]) >= 1);
    assert_eq!(
        one("tenora_tenant_drops_total", &[tenant, ("outcome", "ok")]),
        1
    );

    // Off by default: the series carry no tenant label.
    let t = tenora_with::<Sqlite>(env.config.clone(), Sqlite::tenant_migrations()).await;
    t.create_tenant(&plain, None).await.unwrap();
    // The pool cache's figures appear when published.
    t.tenant_conn(&plain).await.unwrap();
    t.record_metrics();
    let snap = snapshot();
    assert!(
        counters(
            &snap,
            "tenora_tenant_creations_total",
            &[("tenant", plain.as_str())]
        )
        .is_empty()
    );
    let unlabelled: u64 = counters(&snap, "tenora_tenant_creations_total", &[("outcome", "ok")])
        .iter()
        .filter(|(key, _)| !key.key().labels().any(|l| l.key() == "tenant"))
        .map(|(_, n)| n)
        .sum();
    assert!(unlabelled >= 1);
    assert_eq!(counters(&snap, "tenora_pools_created_total", &[]).len(), 1);
    // Per server, labelled with its name.
    assert_eq!(
        counters(
            &snap,
            "tenora_server_connections_refused_total",
            &[("server", "default")]
        )
        .len(),
        1
    );
}
