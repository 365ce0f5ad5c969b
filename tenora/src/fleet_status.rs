//! `fleet_status()`: which tenants are at which migration, from one query on the registry.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::backend::Backend;
use crate::error::Result;
use crate::migrations::Migrations;
use crate::registry::{TenantRecord, TenantState};
use crate::tenant_id::TenantId;
use crate::tenora::Tenora;

/// Where a tenant's database stands against this binary's tenant migrations, as the registry
/// records it after Tenora's last migration run on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MigrationStatus {
    /// It has applied exactly this binary's migrations.
    UpToDate,
    /// It lacks some of this binary's newer migrations (`pending` says how many).
    Behind,
    /// It has applied a version this binary does not know, newer than its newest: another
    /// binary (a newer release in a rolling deploy) migrated it.
    Ahead,
    /// Its applied set differs otherwise: a migration applied with other contents than this
    /// binary's (drift), a gap, or a failed last run.
    Differs,
    /// Nothing recorded yet (a tenant made before Tenora recorded it): the next
    /// `migrate:tenants` records it.
    Unrecorded,
    /// Verifying: its database could not be read (the error is in `problems`).
    Failed,
}

impl MigrationStatus {
    /// The status as shown by `tenora status`.
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationStatus::UpToDate => "up_to_date",
            MigrationStatus::Behind => "behind",
            MigrationStatus::Ahead => "ahead",
            MigrationStatus::Differs => "differs",
            MigrationStatus::Unrecorded => "unrecorded",
            MigrationStatus::Failed => "failed",
        }
    }
}

/// One tenant in [`FleetStatus`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TenantStatus {
    /// The tenant.
    pub id: TenantId,
    /// Its registry state.
    pub state: TenantState,
    /// Its server.
    pub server: String,
    /// The latest version applied, as recorded.
    pub version: Option<String>,
    /// This binary's migrations newer than `version` (`None` when unknown).
    pub pending: Option<usize>,
    /// Where it stands.
    pub status: MigrationStatus,
    /// Verifying: what is wrong (drifted migrations, gaps, unknown versions, the error).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// Verifying: the registry's record was wrong and has been corrected.
    pub corrected: bool,
}

/// The fleet against this binary's tenant migrations (see [`Tenora::fleet_status`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FleetStatus {
    /// This binary's newest tenant migration version.
    pub latest: Option<String>,
    /// Every tenant, by id.
    pub tenants: Vec<TenantStatus>,
    /// How many tenants are at each recorded version (`none`: nothing recorded or applied).
    pub versions: BTreeMap<String, usize>,
}

impl FleetStatus {
    /// How many tenants have `status`.
    pub fn count(&self, status: MigrationStatus) -> usize {
        self.tenants.iter().filter(|t| t.status == status).count()
    }

    /// Whether any tenant's applied set differs from this binary's other than by being
    /// behind or ahead (drift, a gap, or a failed last run), or could not be read.
    pub fn has_drift(&self) -> bool {
        self.count(MigrationStatus::Differs) + self.count(MigrationStatus::Failed) > 0
    }

    /// Verifying: how many registry records were wrong (and corrected).
    pub fn corrected(&self) -> usize {
        self.tenants.iter().filter(|t| t.corrected).count()
    }
}

/// Where `record` stands against `migrations` (whose fingerprint is `wanted`).
pub(crate) fn status_of(
    migrations: &Migrations,
    wanted: &str,
    record: &TenantRecord,
) -> (MigrationStatus, Option<usize>) {
    // Diesel's order of versions: by text.
    let is_newer = |a: &str, b: &str| a > b;
    match (&record.migration_fingerprint, &record.migration_version) {
        (Some(fingerprint), _) if fingerprint == wanted => (MigrationStatus::UpToDate, Some(0)),
        (None, None) => (MigrationStatus::Unrecorded, None),
        // A failed last run: its version is kept, its fingerprint cleared.
        (None, Some(_)) => (MigrationStatus::Differs, None),
        (Some(_), None) => (MigrationStatus::Behind, Some(migrations.len())),
        (Some(_), Some(version)) => {
            let known = migrations.iter().any(|m| m.version() == version);
            let newer = migrations
                .iter()
                .filter(|m| is_newer(m.version(), version))
                .count();
            match migrations.latest_version() {
                Some(latest) if !known && is_newer(version, latest) => {
                    (MigrationStatus::Ahead, Some(0))
                }
                _ if known && newer > 0 && applied_prefix_matches(migrations, version, record) => {
                    (MigrationStatus::Behind, Some(newer))
                }
                _ => (MigrationStatus::Differs, Some(newer)),
            }
        }
    }
}

/// Whether the recorded fingerprint is that of every migration up to `version` (a tenant
/// merely behind), rather than of some other set (drift or a gap).
fn applied_prefix_matches(migrations: &Migrations, version: &str, record: &TenantRecord) -> bool {
    let prefix: Vec<String> = migrations
        .iter()
        .map(|m| m.version().to_owned())
        .filter(|v| (v.len(), v.as_str()) <= (version.len(), version))
        .collect();
    record.migration_fingerprint.as_deref() == Some(migrations.fingerprint_of(&prefix).as_str())
}

/// Where a database that has applied `applied` (versions, oldest first) with `ledger`
/// (version → checksum) stands against `migrations`, read from the database itself.
pub(crate) fn verified_status(
    migrations: &Migrations,
    applied: &[String],
    ledger: &HashMap<String, String>,
) -> (MigrationStatus, usize, Vec<String>) {
    // Diesel's order of versions: by text.
    let is_newer = |a: &str, b: &str| a > b;
    let mut problems: Vec<String> = crate::ledger::drifted(migrations, ledger)
        .iter()
        .map(|d| format!("{d} was applied with other contents"))
        .collect();
    let drift = !problems.is_empty();
    let is_applied = |v: &str| applied.iter().any(|a| a == v);
    let newest_known = migrations
        .iter()
        .map(|m| m.version())
        .filter(|v| is_applied(v))
        .max_by(|a, b| (a.len(), a).cmp(&(b.len(), b)));
    let mut gap = false;
    let mut pending = 0;
    for m in migrations.iter().filter(|m| !is_applied(m.version())) {
        match newest_known {
            Some(newest) if is_newer(newest, m.version()) => {
                gap = true;
                problems.push(format!(
                    "`{}` is not applied, but later migrations are (a gap)",
                    m.name()
                ));
            }
            _ => pending += 1,
        }
    }
    let latest = migrations.latest_version();
    let mut ahead = false;
    let mut unknown_older = false;
    for version in applied
        .iter()
        .filter(|v| !migrations.iter().any(|m| m.version() == v.as_str()))
    {
        if latest.is_none_or(|l| is_newer(version, l)) {
            ahead = true;
        } else {
            unknown_older = true;
            problems.push(format!(
                "version {version} is applied but unknown to this binary"
            ));
        }
    }
    let status = if drift || gap || unknown_older {
        MigrationStatus::Differs
    } else if ahead {
        MigrationStatus::Ahead
    } else if pending > 0 {
        MigrationStatus::Behind
    } else {
        MigrationStatus::UpToDate
    };
    (status, pending, problems)
}

impl<B: Backend> Tenora<B> {
    /// Which tenants are at which tenant migration, against this binary's: one query on the
    /// registry (each row records what Tenora's last migration run on the tenant left
    /// applied), however many tenants there are. Tenants migrated by other tools since are
    /// not seen; `migrate:tenants --verify` connects to every tenant and records again.
    ///
    /// ```no_run
    /// # async fn demo(tenora: tenora::SqliteTenora) -> tenora::Result<()> {
    /// use tenora::MigrationStatus;
    /// let status = tenora.fleet_status().await?;
    /// println!("{} behind", status.count(MigrationStatus::Behind));
    /// for (version, tenants) in &status.versions {
    ///     println!("{tenants} tenant(s) at {version}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn fleet_status(&self) -> Result<FleetStatus> {
        Ok(self.status_of_records(self.list_tenants().await?))
    }

    /// The fleet's status as `records` (registry rows) say.
    fn status_of_records(&self, records: Vec<TenantRecord>) -> FleetStatus {
        let migrations = self.tenant_migrations();
        let wanted = migrations.fingerprint();
        let mut versions = BTreeMap::new();
        let tenants = records
            .into_iter()
            .map(|record| {
                let (status, pending) = status_of(migrations, &wanted, &record);
                *versions
                    .entry(
                        record
                            .migration_version
                            .clone()
                            .unwrap_or_else(|| "none".to_owned()),
                    )
                    .or_insert(0) += 1;
                TenantStatus {
                    id: record.id,
                    state: record.state,
                    server: record.server,
                    version: record.migration_version,
                    pending,
                    status,
                    problems: Vec::new(),
                    corrected: false,
                }
            })
            .collect();
        FleetStatus {
            latest: migrations.latest_version().map(str::to_owned),
            tenants,
            versions,
        }
    }

    /// [`fleet_status`](Self::fleet_status), read from every active tenant's database
    /// instead of the registry (at most `concurrency` at once per server; 0: derived from each
    /// server's budget): Diesel's applied versions and Tenora's ledger of checksums, so drift
    /// (a migration applied with other contents), gaps and unknown versions are found. Where
    /// the registry's record was wrong, it is corrected (`TenantStatus::corrected`).
    pub async fn verify_fleet_status(&self, concurrency: usize) -> Result<FleetStatus> {
        let migrations = self.tenant_migrations().clone();
        let records = self.list_tenants().await?;
        // What the registry records, to correct it where the databases say otherwise.
        let recorded: HashMap<TenantId, Option<String>> = records
            .iter()
            .map(|r| (r.id.clone(), r.migration_fingerprint.clone()))
            .collect();
        let mut status = self.status_of_records(records);
        let mut queues: BTreeMap<String, VecDeque<(usize, TenantId)>> = BTreeMap::new();
        for (index, tenant) in status.tenants.iter().enumerate() {
            if tenant.state == TenantState::Active {
                queues
                    .entry(tenant.server.clone())
                    .or_default()
                    .push_back((index, tenant.id.clone()));
            }
        }
        let mut read = Vec::new();
        self.schedule(
            queues,
            concurrency,
            None,
            &Default::default(),
            |this: Tenora<B>, id: TenantId| async move { this.inspect_tenant(&id).await },
            |index, _, _, result| read.push((index, result)),
        )
        .await?;
        for (index, result) in read {
            let tenant = &mut status.tenants[index];
            match result {
                Ok((applied, ledger)) => {
                    let (verified, pending, problems) =
                        verified_status(&migrations, &applied, &ledger);
                    let fingerprint = migrations.fingerprint_of(&applied);
                    let recorded = recorded.get(&tenant.id).cloned().flatten();
                    if recorded.as_deref() != Some(fingerprint.as_str()) {
                        self.record_migrations(&tenant.id, Some(&applied), None)
                            .await;
                        tenant.corrected = true;
                    }
                    tenant.version = applied.last().cloned();
                    tenant.pending = Some(pending);
                    tenant.status = verified;
                    tenant.problems = problems;
                }
                Err(e) => {
                    tenant.status = MigrationStatus::Failed;
                    tenant.pending = None;
                    tenant.problems = vec![crate::config::redact_url(&e.to_string())];
                }
            }
        }
        status.versions = BTreeMap::new();
        for tenant in &status.tenants {
            let version = tenant.version.clone().unwrap_or_else(|| "none".to_owned());
            *status.versions.entry(version).or_insert(0) += 1;
        }
        Ok(status)
    }
}
