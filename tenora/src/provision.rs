//! Creating and dropping tenants, as explicit steps with compensation.
//!
//! `create_tenant` first claims the id with a `provisioning` registry row (which also stores the
//! sealed password, so a crash leaves a row that says how far it got), then creates the user,
//! the database, locks it down, migrates and seeds it as the tenant's own user, and finally
//! marks the row `active`. If a step fails, every earlier step is undone in reverse order —
//! only what this call created is removed, never a database or role that existed before — and
//! the error names the tenant and the step.

use std::fmt;

use tracing::Instrument as _;

use crate::backend::{self, Backend, Target};
use crate::error::{Error, Result};
use crate::migrate::{self, MigrationOp};
use crate::registry::{RegistryConnection as _, TenantRecord, TenantState};
use crate::secret::{self, SecretString};
use crate::tenant_id::TenantId;
use crate::tenora::Tenora;

/// A step of creating or dropping a tenant, as named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Insert the `provisioning` registry row.
    Register,
    /// Create the tenant's database user.
    CreateUser,
    /// Create the tenant's database.
    CreateDatabase,
    /// Revoke other users' access to the database.
    LockDown,
    /// Run the tenant migrations.
    Migrate,
    /// Run the tenant seeds.
    Seed,
    /// Mark the registry row `active`.
    Activate,
    /// Mark the registry row `deleting`.
    MarkDeleting,
    /// Drop the tenant's database.
    DropDatabase,
    /// Drop the tenant's database user.
    DropUser,
    /// Delete the registry row.
    Unregister,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Register => "register",
            Step::CreateUser => "create user",
            Step::CreateDatabase => "create database",
            Step::LockDown => "lock down",
            Step::Migrate => "migrate",
            Step::Seed => "seed",
            Step::Activate => "activate",
            Step::MarkDeleting => "mark deleting",
            Step::DropDatabase => "drop database",
            Step::DropUser => "drop user",
            Step::Unregister => "unregister",
        })
    }
}

/// What has been created so far, for undoing.
#[derive(Default)]
struct Made {
    row: bool,
    server: backend::Made,
}

impl<B: Backend> Tenora<B> {
    /// Creates tenant `id`: its database (and, where the backend has users, a dedicated user
    /// that owns it and alone may connect), runs the tenant migrations and seeds, and registers
    /// it as `active`.
    ///
    /// `password` sets the user's password; `None` generates a strong one. Backends without
    /// users (SQLite) refuse a password. The password is stored sealed with the configured key.
    ///
    /// Fails with [`Error::TenantExists`] (changing nothing) when the id is registered or its
    /// database or user already exists, and with [`Error::Provision`] naming the failed step
    /// otherwise — after removing everything this call created.
    ///
    /// The work runs on its own Tokio task, so dropping the returned future (a request timeout,
    /// a client that went away) does not stop it half-way: it still finishes or undoes itself.
    pub async fn create_tenant(
        &self,
        id: &TenantId,
        password: Option<SecretString>,
    ) -> Result<TenantRecord> {
        let backend = self.backend();
        backend.naming().check(id)?;
        let password = match (backend.uses_passwords(), password) {
            (true, Some(p)) => {
                secret::check_password(p.expose())?;
                Some(p)
            }
            (true, None) => Some(secret::generate_password()),
            (false, Some(_)) => {
                return Err(Error::Unsupported(format!(
                    "{} backend has no database users, so tenant `{id}` cannot have a password; \
                     pass None",
                    B::CLIENT
                )));
            }
            (false, None) => None,
        };
        let sealed = password
            .as_ref()
            .map(|p| secret::seal(self.key(), id, p.expose()));
        let this = self.clone();
        let id = id.clone();
        let span = tracing::info_span!("tenora.create_tenant", tenant = %id);
        let work = async move { this.create_claimed(&id, password, sealed).await };
        match tokio::spawn(work.instrument(span)).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(Error::Unsupported(format!(
                "the tenant creation task was cancelled: {e}"
            ))),
        }
    }

    async fn create_claimed(
        &self,
        id: &TenantId,
        password: Option<SecretString>,
        sealed: Option<String>,
    ) -> Result<TenantRecord> {
        // Claim the id first: a duplicate changes nothing.
        {
            let mut conn = self.base_conn().await?;
            let inserted = conn
                .registry_insert(self.table(), id, sealed, TenantState::Provisioning)
                .await
                .map_err(|e| self.registry_error(e, id));
            match inserted {
                Ok(_) => {}
                // Taken (the key is the id): say by what, reading the row only in this case.
                Err(Error::TenantExists { .. }) => {
                    let what = match self.registry_get_on(&mut conn, id).await? {
                        Some(row) => format!("it is registered, in state `{}`", row.record.state),
                        None => "it was registered and removed concurrently".to_owned(),
                    };
                    return Err(Error::TenantExists {
                        id: id.clone(),
                        what,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        let mut made = Made {
            row: true,
            ..Made::default()
        };
        match self.provision(id, password.as_ref(), &mut made).await {
            Ok(record) => Ok(record),
            Err((step, source)) => {
                let cleanup = self.undo(id, &made).await;
                if matches!(source, Error::TenantExists { .. }) && cleanup.is_empty() {
                    return Err(source);
                }
                Err(Error::Provision {
                    id: id.clone(),
                    step,
                    source: Box::new(source),
                    cleanup,
                })
            }
        }
    }

    async fn provision(
        &self,
        id: &TenantId,
        password: Option<&SecretString>,
        made: &mut Made,
    ) -> std::result::Result<TenantRecord, (Step, Error)> {
        let backend = self.backend();
        // With an up-to-date template, the user and the database (cloned, already migrated and
        // locked down) are made together; otherwise (no template, or a stale one) the database
        // is created empty and migrated.
        let cloned = self.config().tenant.template
            && backend
                .create_from_template(
                    id,
                    password,
                    &self.tenant_migrations().fingerprint(),
                    &mut made.server,
                )
                .await?;
        if !cloned {
            if let Some(password) = password.filter(|_| !made.server.user) {
                backend
                    .create_user(id, password)
                    .await
                    .map_err(|e| (Step::CreateUser, e))?;
                made.server.user = true;
            }
            backend
                .create_database(id)
                .await
                .map_err(|e| (Step::CreateDatabase, e))?;
            made.server.database = true;
        }
        let database = format!("tenant `{id}`");
        if cloned {
            // Already migrated and locked down; connect only to run seeds.
            if !self.tenant_seeds().is_empty() {
                let (mut conn, _permit) = self
                    .connect_tenant_budgeted(id, password, crate::budget::Slice::Work)
                    .await
                    .map_err(|e| (Step::Seed, e))?
                    .into_parts();
                migrate::run_seeds(&mut conn, self.tenant_seeds(), &database)
                    .await
                    .map_err(|e| (Step::Seed, e))?;
            }
        } else {
            backend
                .lock_down(id)
                .await
                .map_err(|e| (Step::LockDown, e))?;
            let (conn, _permit) = self
                .connect_tenant_budgeted(id, password, crate::budget::Slice::Work)
                .await
                .map_err(|e| (Step::Migrate, e))?
                .into_parts();
            let (mut conn, _) = backend
                .run_migrations(
                    Target::Tenant(id),
                    conn,
                    self.tenant_migrations().clone(),
                    MigrationOp::Up,
                )
                .await
                .map_err(|source| {
                    (
                        Step::Migrate,
                        Error::Migration {
                            database: database.clone(),
                            source,
                        },
                    )
                })?;
            migrate::run_seeds(&mut conn, self.tenant_seeds(), &database)
                .await
                .map_err(|e| (Step::Seed, e))?;
        }

        let mut base = self.base_conn().await.map_err(|e| (Step::Activate, e))?;
        let changed = base
            .registry_set_state(
                self.table(),
                id,
                Some(TenantState::Provisioning),
                TenantState::Active,
            )
            .await
            .map_err(|e| (Step::Activate, self.registry_error(e, id)))?;
        if changed != 1 {
            return Err((
                Step::Activate,
                Error::Unsupported(format!(
                    "the registry row of tenant `{id}` is no longer `provisioning` (was the tenant dropped while it was being created?)"
                )),
            ));
        }
        let row = self
            .registry_get_on(&mut base, id)
            .await
            .map_err(|e| (Step::Activate, e))?
            .ok_or_else(|| {
                (
                    Step::Activate,
                    Error::Unsupported(format!(
                        "the registry row of tenant `{id}` vanished while it was being created"
                    )),
                )
            })?;
        tracing::info!(tenant = %id, "tenant created");
        Ok(row.record)
    }

    /// Undoes what `made` says was created, newest first; returns what could not be undone.
    async fn undo(&self, id: &TenantId, made: &Made) -> Vec<String> {
        let backend = self.backend();
        let mut failures = Vec::new();
        if made.server.database
            && let Err(e) = backend.drop_database(id).await
        {
            failures.push(format!("{}: {e}", Step::DropDatabase));
        }
        if made.server.user
            && let Err(e) = backend.drop_user(id).await
        {
            failures.push(format!("{}: {e}", Step::DropUser));
        }
        if made.row {
            // Keep the row (as `deleting`) while something it names could not be removed, so
            // `drop_tenant` can finish the job; otherwise release the id.
            let keep = !failures.is_empty();
            let done = async {
                let mut conn = self.base_conn().await?;
                if keep {
                    conn.registry_set_state(self.table(), id, None, TenantState::Deleting)
                        .await
                } else {
                    conn.registry_delete(self.table(), id).await
                }
                .map_err(|e| self.registry_error(e, id))
            }
            .await;
            if let Err(e) = done {
                failures.push(format!("{}: {e}", Step::Unregister));
            }
        }
        if !failures.is_empty() {
            tracing::error!(tenant = %id, ?failures, "could not undo a failed tenant creation");
        }
        failures
    }

    /// Drops tenant `id`: closes its pool, drops its database and user, and deletes its registry
    /// row. Fails with [`Error::UnknownTenant`] when it is not registered. Safe to call again
    /// after a failure: each step skips what is already gone.
    pub async fn drop_tenant(&self, id: &TenantId) -> Result<()> {
        self.drop_tenant_steps(id)
            .instrument(tracing::info_span!("tenora.drop_tenant", tenant = %id))
            .await
    }

    async fn drop_tenant_steps(&self, id: &TenantId) -> Result<()> {
        let backend = self.backend();
        // Names are derived from the id and today's prefixes: never act on names that do not
        // fit (they could be truncated by the server onto someone else's database).
        backend.naming().check(id)?;
        let fail = |step: Step| {
            move |e: Error| Error::Drop {
                id: id.clone(),
                step,
                source: Box::new(e),
            }
        };
        {
            let mut conn = self.base_conn().await?;
            if self.registry_get_on(&mut conn, id).await?.is_none() {
                return Err(Error::UnknownTenant {
                    id: id.clone(),
                    state: None,
                });
            }
            conn.registry_set_state(self.table(), id, None, TenantState::Deleting)
                .await
                .map_err(|e| fail(Step::MarkDeleting)(self.registry_error(e, id)))?;
        }
        self.evict(id);
        backend
            .drop_database(id)
            .await
            .map_err(fail(Step::DropDatabase))?;
        if backend.uses_passwords() {
            backend.drop_user(id).await.map_err(fail(Step::DropUser))?;
        }
        let mut conn = self.base_conn().await?;
        conn.registry_delete(self.table(), id)
            .await
            .map_err(|e| fail(Step::Unregister)(self.registry_error(e, id)))?;
        tracing::info!(tenant = %id, "tenant dropped");
        Ok(())
    }
}
