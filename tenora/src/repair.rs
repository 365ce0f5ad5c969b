//! Repair after crashes: finish or undo the work a dead process left half-done.
//!
//! Only a crash (kill -9, power loss, a lost server) can leave a registry row that is not
//! `active`, and without a lease (see `lease`) nobody is working on it any more:
//! - `provisioning`: the creation is undone — what carries the row's proof of ownership is
//!   removed and the row deleted, so the id is free again;
//! - `deleting`: the drop is finished the same way.
//!
//! Rows whose lease a live process holds are left alone, and objects with a tenant's names but
//! without its proof are never removed (they are reported).

use tracing::Instrument as _;

use crate::backend::Backend;
use crate::error::Result;
use crate::ownership::Removal;
use crate::registry::TenantState;
use crate::tenant_id::TenantId;
use crate::tenora::Tenora;

/// What [`Tenora::repair_tenant`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Repair {
    /// Nothing to repair: the tenant is `active`, or not registered.
    Healthy,
    /// A live process is creating or dropping the tenant right now: left alone.
    InProgress,
    /// A creation abandoned by a crash was undone; the id is free again.
    Undone {
        /// What was removed and what was left alone.
        removal: Removal,
    },
    /// A drop abandoned by a crash was finished.
    Dropped {
        /// What was removed and what was left alone.
        removal: Removal,
    },
    /// A password rotation interrupted by a crash was finished: the server and the registry
    /// hold the new password.
    RotationFinished,
}

impl std::fmt::Display for Repair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let removal = match self {
            Repair::Healthy => return f.write_str("nothing to repair"),
            Repair::InProgress => {
                return f.write_str("being created or dropped by a live process; left alone");
            }
            Repair::RotationFinished => {
                return f.write_str("interrupted password rotation finished");
            }
            Repair::Undone { removal } => {
                f.write_str("abandoned creation undone")?;
                removal
            }
            Repair::Dropped { removal } => {
                f.write_str("abandoned drop finished")?;
                removal
            }
        };
        if !removal.removed.is_empty() {
            write!(f, "; removed {}", removal.removed.join(", "))?;
        }
        if !removal.left_alone.is_empty() {
            write!(
                f,
                "; left alone (not made by Tenora for this tenant): {}",
                removal.left_alone.join(", ")
            )?;
        }
        Ok(())
    }
}

impl<B: Backend> Tenora<B> {
    /// Repairs tenant `id` after a crash: undoes a creation abandoned in `provisioning` (the id
    /// is free again) or finishes a drop abandoned in `deleting`. Removes only objects that
    /// carry the proof of being this tenant's; leaves alone a tenant whose lease a live
    /// process holds ([`Repair::InProgress`]). Safe to run at any time and repeatedly.
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let config = tenora::Config::sqlite(dir.path().join("base.sqlite"))
    /// #     .tenant_database_dir(dir.path().join("tenants"));
    /// # let tenora = tenora::SqliteTenora::builder(config)
    /// #     .base_migrations(base_schema::MIGRATIONS) // the registry table
    /// #     .connect()
    /// #     .await?;
    /// # tenora.migrate_base().await?;
    /// use tenora::Repair;
    ///
    /// let acme = tenora.tenant_id("acme")?;
    /// tenora.create_tenant(&acme, None).await?;
    /// match tenora.repair_tenant(&acme).await? {
    ///     Repair::Healthy => {} // an active tenant: nothing to do
    ///     Repair::InProgress => println!("another process is working on acme; try later"),
    ///     done => println!("acme: {done}"), // an abandoned creation undone, or a drop finished
    /// }
    /// # Ok(()) }
    /// # #[cfg(not(feature = "sqlite"))]
    /// # fn main() {}
    /// ```
    pub async fn repair_tenant(&self, id: &TenantId) -> Result<Repair> {
        self.repair_steps(id)
            .instrument(tracing::info_span!("tenora.repair_tenant", tenant = %id))
            .await
    }

    async fn repair_steps(&self, id: &TenantId) -> Result<Repair> {
        self.check_names(id)?;
        let Some(lease) = self.lease(id).await? else {
            return Ok(Repair::InProgress);
        };
        let result = async {
            let row = {
                let mut conn = self.base_conn().await?;
                self.registry_get_on(&mut conn, id).await?
            };
            match row.map(|r| (r.record.state, r)) {
                None => Ok(Repair::Healthy),
                Some((TenantState::Active, row)) => {
                    let mut conn = self.base_conn().await?;
                    Ok(match self.finish_rotation(&mut conn, id, &row).await? {
                        Some(_) => Repair::RotationFinished,
                        None => Repair::Healthy,
                    })
                }
                Some((TenantState::Provisioning, row)) => {
                    let removal = self.remove_abandoned(id, &row).await?;
                    tracing::info!(tenant = %id, "abandoned creation undone");
                    Ok(Repair::Undone { removal })
                }
                Some((TenantState::Deleting, _)) => {
                    let removal = self.drop_leased(id).await?;
                    Ok(Repair::Dropped { removal })
                }
            }
        }
        .await;
        lease.release().await;
        result
    }

    /// Repairs every registered tenant that is not `active`, and every active one whose
    /// password rotation was interrupted (see [`Tenora::repair_tenant`]), one at a time; returns
    /// each one's outcome. A failure on one tenant does not stop the others. Then sweeps the
    /// warm spares ([`Tenora::sweep_spares`]; a failure there is logged).
    pub async fn repair_all(&self) -> Result<Vec<(TenantId, Result<Repair>)>> {
        // Rows not `active`, and active ones whose password rotation was interrupted.
        let ids: Vec<TenantId> = self
            .registry_rows()
            .await?
            .into_iter()
            .filter_map(|row| {
                let rotating = row.password.as_deref().is_some_and(|p| {
                    crate::secret::Sealing::of(p) == crate::secret::Sealing::Rotating
                });
                let stored = row.parse().ok()?;
                (stored.record.state != TenantState::Active || rotating).then_some(stored.record.id)
            })
            .collect();
        let mut outcomes = Vec::with_capacity(ids.len());
        for id in ids {
            let outcome = self.repair_tenant(&id).await;
            outcomes.push((id, outcome));
        }
        // Then warm spares a crash abandoned (after the tenants: a hand-over's tenant is
        // repaired first, by its own row).
        match self.sweep_spares().await {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(spares = ?removed, "removed abandoned or outdated warm spares");
            }
            Ok(_) => {}
            // The tenants' outcomes stand; the next sweep (or fill) tries again.
            Err(e) => tracing::warn!(error = %e, "could not sweep the warm spares"),
        }
        Ok(outcomes)
    }
}
