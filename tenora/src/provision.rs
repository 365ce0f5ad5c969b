//! Creating and dropping tenants, as explicit steps with compensation.
//!
//! `create_tenant` takes the tenant's lease (see `lease`), claims the id with a `provisioning`
//! registry row (which stores the sealed password and a fresh ownership token, so a crash
//! leaves a row that says what to look for), then creates the user and the database — each
//! carrying the token's proof (see `ownership`) — locks it down, migrates and seeds it as the
//! tenant's own user, and finally marks the row `active`. If a step fails, what carries the
//! proof is removed — never a database or role that existed before — and the error names the
//! tenant and the step. A crash leaves the row `provisioning` without a lease: `repair_tenant`
//! or simply a new `create_tenant` of the same id removes what it made.

use tracing::Instrument as _;

use crate::backend::Server as _;
use crate::backend::{self, Backend, Target};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::lifecycle::Step;
use crate::migrate::{self, MigrationOp};
use crate::ownership::{self, Presence, Proof, Removal};
use crate::registry::{RegistryConnection as _, StoredTenant, TenantRecord, TenantState};
use crate::secret::{self, SecretString};
use crate::servers::ServerSlot;
use crate::tenant_id::TenantId;
use crate::tenora::Tenora;
use std::sync::Arc;

/// A new tenant's password: as given or generated, sealed as its registry row holds it, and
/// whether it was generated (then a warm spare's own, set when the spare was made, may be
/// adopted instead: setting a SCRAM verifier costs the server milliseconds).
pub(crate) struct NewPassword {
    pub(crate) password: Option<SecretString>,
    /// What the `provisioning` row stores.
    pub(crate) sealed: Option<String>,
    pub(crate) generated: bool,
    /// A spare's password adopted as `password`, sealed for the tenant: written when the row
    /// is activated (until then, nothing reads the password of a `provisioning` row).
    pub(crate) adopted: Option<String>,
}

impl<B: Backend> Tenora<B> {
    /// Creates tenant `id`: its database (and, where the backend has users, a dedicated user
    /// that owns it and alone may connect), runs the tenant migrations and seeds, and registers
    /// it as `active`.
    ///
    /// `password` sets the user's password; `None` generates a strong one. Backends without
    /// users (SQLite) refuse a password. The password is stored sealed with the configured key.
    ///
    /// Fails with [`Error::TenantExists`] (changing nothing) when the id is registered or a
    /// database or user with its names already exists, with [`Error::InProgress`] while
    /// another process creates or drops the same id, and with [`Error::Provision`] naming the
    /// failed step otherwise — after removing everything this call created. An earlier
    /// creation of the same id that a crash abandoned is repaired first (see
    /// [`Tenora::repair_tenant`]), so a failed sign-up can simply be retried.
    ///
    /// The work runs on its own Tokio task, so dropping the returned future (a request timeout,
    /// a client that went away) does not stop it half-way: it still finishes or undoes itself.
    ///
    /// ```no_run
    /// # async fn demo(tenora: tenora::SqliteTenora) -> tenora::Result<()> {
    /// let acme = tenora.tenant_id("acme")?; // untrusted input, validated
    /// match tenora.create_tenant(&acme, None).await {
    ///     Ok(record) => println!("created {} ({})", record.id, record.state),
    ///     Err(tenora::Error::TenantExists { .. }) => println!("acme exists already"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn create_tenant(
        &self,
        id: &TenantId,
        password: Option<SecretString>,
    ) -> Result<TenantRecord> {
        let options = crate::TenantOptions {
            password,
            server: None,
        };
        self.create_tenant_with(id, options).await
    }

    /// [`Tenora::create_tenant`] with options: the password, and the server to place the
    /// tenant on (default: the server, among those that accept new tenants, with the fewest
    /// tenants per unit of `weight`). The placement is recorded in the registry row before
    /// anything is made on the server.
    ///
    /// ```no_run
    /// # async fn demo(tenora: tenora::PgTenora) -> tenora::Result<()> {
    /// use tenora::TenantOptions;
    /// let acme = tenora.tenant_id("acme")?;
    /// let record = tenora
    ///     .create_tenant_with(&acme, TenantOptions::default().server("eu-2"))
    ///     .await?;
    /// assert_eq!(record.server, "eu-2");
    /// # Ok(()) }
    /// ```
    pub async fn create_tenant_with(
        &self,
        id: &TenantId,
        options: crate::TenantOptions,
    ) -> Result<TenantRecord> {
        let crate::TenantOptions { password, server } = options;
        let started = std::time::Instant::now();
        // Bad input is counted here; the work, by its task (it may outlive this call).
        let credentials = match self.creation_input(id, password) {
            Ok(input) => input,
            Err(e) => {
                let tenant = self.metrics_tenant(id);
                crate::telemetry::tenant_created(tenant, started.elapsed(), Some(&e));
                return Err(e);
            }
        };
        let this = self.clone();
        let what = format!("the creation of tenant `{id}`");
        let id = id.clone();
        let span = tracing::info_span!("tenora.create_tenant", tenant = %id);
        let work = async move {
            let result = async {
                let lease = this
                    .lease(&id)
                    .await?
                    .ok_or_else(|| Error::InProgress { id: id.clone() })?;
                let result = this
                    .create_leased(&id, credentials, server.as_deref())
                    .await;
                lease.release().await;
                result
            }
            .await;
            crate::telemetry::tenant_created(
                this.metrics_tenant(&id),
                started.elapsed(),
                result.as_ref().err(),
            );
            result
        };
        match tokio::spawn(work.instrument(span)).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(Error::Cancelled {
                what,
                reason: e.to_string(),
            }),
        }
    }

    /// The password to create tenant `id` with, checked (or generated), and its sealed form
    /// for the registry.
    fn creation_input(&self, id: &TenantId, password: Option<SecretString>) -> Result<NewPassword> {
        self.check_names(id)?;
        let generated = password.is_none();
        let password = match (self.uses_passwords(), password) {
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
        let allow_plaintext = self.config().secrets.allow_plaintext;
        let sealed = password
            .as_ref()
            .map(|p| secret::seal(self.keys(), allow_plaintext, id, p.expose()))
            .transpose()?;
        Ok(NewPassword {
            password,
            sealed,
            generated,
            adopted: None,
        })
    }

    async fn create_leased(
        &self,
        id: &TenantId,
        mut credentials: NewPassword,
        server: Option<&str>,
    ) -> Result<TenantRecord> {
        let token = ownership::new_token();
        let slot = Arc::clone(
            self.claim(id, credentials.sealed.clone(), &token, server)
                .await?,
        );
        let slot = &slot;
        failpoint::reached(Step::Register.key());
        let proof = Proof {
            token: Some(token.clone()),
            passwords: credentials.password.iter().cloned().collect(),
            legacy: false,
        };
        let provisioned = self.provision(slot, id, &mut credentials, &token).await;
        // Whether or not a warm spare was used, top the set up now the sign-up is over.
        self.refill_later(slot);
        match provisioned {
            Ok(record) => Ok(record),
            Err((step, source)) => {
                // An object whose creation failed because it existed is someone else's, whatever
                // it carries.
                let existed = matches!(source, Error::TenantExists { .. }).then_some(step);
                let cleanup = self.undo(slot, id, &proof, existed).await;
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

    /// Places the tenant (on `server`, or the least loaded server that takes new tenants)
    /// and inserts its `provisioning` row naming that server (the caller holds the lease);
    /// returns the server. A `provisioning` row left by a creation that a crash abandoned
    /// (nobody else can hold the lease) is repaired first.
    async fn claim(
        &self,
        id: &TenantId,
        sealed: Option<String>,
        token: &str,
        server: Option<&str>,
    ) -> Result<&Arc<ServerSlot<B>>> {
        let mut conn = self.base_conn().await?;
        let slot = match (server, self.servers().all().len()) {
            // One server: nothing to count (it may still refuse new tenants).
            (None, 1) => self.servers().place(None, &Default::default())?,
            _ => {
                let counts = match server {
                    Some(_) => Default::default(),
                    None => conn
                        .registry_server_counts(self.table())
                        .await
                        .map_err(|e| self.registry_error_any(e, "cannot count tenants per server"))?
                        .into_iter()
                        .map(|c| (c.server, u64::try_from(c.tenants).unwrap_or(0)))
                        .collect(),
                };
                self.servers().place(server, &counts)?
            }
        };
        let mut repaired = false;
        loop {
            let inserted = conn
                .registry_insert(
                    self.table(),
                    id,
                    sealed.clone(),
                    TenantState::Provisioning,
                    Some(token),
                    &slot.name,
                )
                .await
                .map_err(|e| self.registry_error(e, id));
            match inserted {
                Ok(_) => return Ok(slot),
                // Taken (the key is the id): say by what, reading the row only in this case.
                Err(Error::TenantExists { .. }) => {}
                Err(e) => return Err(e),
            }
            let what = match self.registry_get_on(&mut conn, id).await? {
                Some(row) if row.record.state == TenantState::Provisioning && !repaired => {
                    drop(conn);
                    let removal = self.remove_abandoned(id, &row).await?;
                    tracing::warn!(
                        tenant = %id,
                        removed = ?removal.removed,
                        left_alone = ?removal.left_alone,
                        "repaired an earlier creation of this tenant that was abandoned"
                    );
                    repaired = true;
                    conn = self.base_conn().await?;
                    continue;
                }
                Some(row) if row.record.state == TenantState::Deleting => format!(
                    "it is registered, in state `deleting`: an earlier drop did not finish; \
                     run `tenora tenants repair {id}` (or `repair_tenant`) first"
                ),
                Some(row) => format!("it is registered, in state `{}`", row.record.state),
                None if !repaired => {
                    // Removed concurrently: try once more.
                    repaired = true;
                    continue;
                }
                None => "it was registered and removed concurrently".to_owned(),
            };
            return Err(Error::TenantExists {
                id: id.clone(),
                what,
            });
        }
    }

    async fn provision(
        &self,
        slot: &Arc<ServerSlot<B>>,
        id: &TenantId,
        credentials: &mut NewPassword,
        token: &str,
    ) -> std::result::Result<TenantRecord, (Step, Error)> {
        let backend = &slot.server;
        let mut made = backend::Made::default();
        // A warm spare (cloned ahead) is renamed into place; else, with an up-to-date
        // template, the user and the database (cloned, already migrated and locked down) are
        // made together; otherwise (no template, or a stale one) the database is created
        // empty and migrated.
        let spared = self
            .take_spare(slot, id, credentials, token, &mut made)
            .await?;
        let password = credentials.password.as_ref();
        let cloned = spared
            || self.config().tenant.template
                && backend
                    .create_from_template(
                        id,
                        password,
                        token,
                        &self.tenant_migrations().fingerprint(),
                        &mut made,
                    )
                    .await?;
        if !cloned {
            if let Some(password) = password.filter(|_| !made.user) {
                backend
                    .create_user(id, password, token)
                    .await
                    .map_err(|e| (Step::CreateUser, e))?;
                failpoint::reached(Step::CreateUser.key());
            }
            backend
                .create_database(id, token)
                .await
                .map_err(|e| (Step::CreateDatabase, e))?;
            failpoint::reached(Step::CreateDatabase.key());
        }
        let database = format!("tenant `{id}`{}", self.server_label(slot));
        // What the tenant's database has applied once made: a clone has what the template was
        // built with (this binary's migrations, as its fingerprint matched).
        let mut applied: Vec<String> = self
            .tenant_migrations()
            .iter()
            .map(|m| m.version().to_owned())
            .collect();
        if cloned {
            // Already migrated and locked down; connect only to run seeds.
            if !self.tenant_seeds().is_empty() {
                let (mut conn, _permit) = self
                    .connect_tenant_budgeted(slot, id, password, crate::budget::Slice::Work)
                    .await
                    .map_err(|e| (Step::Seed, e))?
                    .into_parts();
                migrate::run_seeds(&mut conn, self.tenant_seeds(), &database)
                    .await
                    .map_err(|e| (Step::Seed, e))?;
            }
            failpoint::reached(Step::Seed.key());
        } else {
            backend
                .lock_down(id)
                .await
                .map_err(|e| (Step::LockDown, e))?;
            failpoint::reached(Step::LockDown.key());
            let (conn, _permit) = self
                .connect_tenant_budgeted(slot, id, password, crate::budget::Slice::Work)
                .await
                .map_err(|e| (Step::Migrate, e))?
                .into_parts();
            let (mut conn, ran) = self
                .run_migrations_observed(
                    backend,
                    Target::Tenant(id),
                    conn,
                    self.tenant_migrations().clone(),
                    MigrationOp::Up,
                    crate::migrate::Guards::default(),
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
            applied = ran.applied;
            failpoint::reached(Step::Migrate.key());
            migrate::run_seeds(&mut conn, self.tenant_seeds(), &database)
                .await
                .map_err(|e| (Step::Seed, e))?;
            failpoint::reached(Step::Seed.key());
        }

        let mut base = self.base_conn().await.map_err(|e| (Step::Activate, e))?;
        let fingerprint = self.tenant_migrations().fingerprint_of(&applied);
        let version = applied.last().map(String::as_str);
        let (changed, stored) = self
            .activate(&mut base, id, version, &fingerprint, credentials)
            .await
            .map_err(|e| (Step::Activate, e))?;
        if changed != 1 {
            return Err((
                Step::Activate,
                Error::Conflict {
                    id: id.clone(),
                    message: "its registry row is no longer `provisioning` (was it dropped or \
                              repaired by hand while it was being created?)"
                        .to_owned(),
                },
            ));
        }
        // Active from here on: nothing may undo it any more, so a failed read of the row is
        // answered with what is known.
        self.unknown_tenants().forget(id);
        tracing::info!(tenant = %id, "tenant created");
        // The row as stored: returned by the activation where the backend can, else read.
        let stored = match stored {
            Some(row) => row.into_stored(self.table()).map(Some),
            None => self.registry_get_on(&mut base, id).await,
        };
        match stored {
            Ok(Some(row)) => Ok(row.record),
            Ok(None) | Err(_) => {
                let now = chrono::Utc::now().naive_utc();
                Ok(TenantRecord {
                    id: id.clone(),
                    state: TenantState::Active,
                    created_at: now,
                    updated_at: now,
                    server: slot.name.clone(),
                    migration_version: version.map(str::to_owned),
                    migration_fingerprint: Some(fingerprint),
                })
            }
        }
    }

    /// Marks tenant `id`'s `provisioning` row `active` with its migration state (and the
    /// adopted password of a warm spare) in one statement; returns the rows changed and the
    /// row where the backend returns it. A registry without the migration-state columns gets
    /// the state (and password) alone.
    async fn activate(
        &self,
        base: &mut B::Connection,
        id: &TenantId,
        version: Option<&str>,
        fingerprint: &str,
        credentials: &NewPassword,
    ) -> Result<(usize, Option<crate::registry::RawRow>)> {
        let adopted = credentials.adopted.as_deref();
        match base
            .registry_activate(self.table(), id, version, fingerprint, adopted)
            .await
        {
            Err(crate::registry::RegistryError::MissingColumn(column)) => {
                tracing::warn!(tenant = %id, column, "could not record the tenant's migration state");
                // The password first, while the row is still `provisioning`: a crash in
                // between leaves a creation that repair undoes, never an active tenant whose
                // stored password is not its role's.
                if let (Some(new), Some(old)) = (adopted, credentials.sealed.as_deref()) {
                    base.registry_swap_password(self.table(), id, old, new)
                        .await
                        .map_err(|e| self.registry_error(e, id))?;
                }
                base.registry_set_state(
                    self.table(),
                    id,
                    Some(TenantState::Provisioning),
                    TenantState::Active,
                )
                .await
                .map(|n| (n, None))
                .map_err(|e| self.registry_error(e, id))
            }
            other => other.map_err(|e| self.registry_error(e, id)),
        }
    }

    /// Undoes a failed creation: removes what carries its proof — but never an object whose
    /// creation failed because it existed (`existed`: that step) — then releases the id;
    /// returns what could not be undone (the row then stays, as `deleting`, for
    /// `repair_tenant`).
    async fn undo(
        &self,
        slot: &ServerSlot<B>,
        id: &TenantId,
        proof: &Proof,
        existed: Option<Step>,
    ) -> Vec<String> {
        let mut failures = Vec::new();
        match self.remove_proven_except(slot, id, proof, existed).await {
            Ok(removal) if !removal.left_alone.is_empty() => {
                tracing::info!(
                    tenant = %id,
                    left_alone = ?removal.left_alone,
                    "objects with this tenant's names that Tenora did not make were left alone"
                );
            }
            Ok(_) => {}
            Err((step, e)) => failures.push(format!("{step}: {e}")),
        }
        let keep = !failures.is_empty();
        let done = async {
            let mut conn = self.base_conn().await?;
            if keep {
                conn.registry_set_state(self.table(), id, None, TenantState::Deleting)
                    .await
            } else {
                conn.registry_delete(self.table(), id.as_str(), proof.token.as_deref())
                    .await
            }
            .map_err(|e| self.registry_error(e, id))
        }
        .await;
        if let Err(e) = done {
            failures.push(format!("{}: {e}", Step::Unregister));
        }
        if !failures.is_empty() {
            tracing::error!(tenant = %id, ?failures, "could not undo a failed tenant creation");
        }
        failures
    }

    /// The proof a registry row gives (the caller has checked the tenant's names).
    pub(crate) fn proof_of(&self, row: &StoredTenant) -> Proof {
        // MariaDB proves users by their password: open it when the key allows; without it the
        // user cannot be proven and is left alone.
        let passwords = match (self.uses_passwords(), &row.password) {
            (true, Some(sealed)) => secret::open_candidates(
                self.keys(),
                self.config().secrets.allow_plaintext,
                &row.record.id,
                sealed,
            )
            .unwrap_or_default(),
            _ => Vec::new(),
        };
        Proof {
            token: row.token.clone(),
            passwords,
            legacy: row.token.is_none() && row.record.state != TenantState::Provisioning,
        }
    }

    /// Removes the tenant's database and user where they carry `proof` (database first: on
    /// PostgreSQL it belongs to the user); reports what was left alone.
    pub(crate) async fn remove_proven(
        &self,
        slot: &ServerSlot<B>,
        id: &TenantId,
        proof: &Proof,
    ) -> std::result::Result<Removal, (Step, Error)> {
        self.remove_proven_except(slot, id, proof, None).await
    }

    /// [`Tenora::remove_proven`], leaving alone the object a failed `existed` step met.
    async fn remove_proven_except(
        &self,
        slot: &ServerSlot<B>,
        id: &TenantId,
        proof: &Proof,
        existed: Option<Step>,
    ) -> std::result::Result<Removal, (Step, Error)> {
        use crate::ownership::Presence as P;
        let backend = &slot.server;
        let mut found = backend
            .inspect(id, proof)
            .await
            .map_err(|e| (Step::DropDatabase, e))?
            .trusting(proof);
        match existed {
            Some(Step::CreateUser) if found.user == P::Ours => found.user = P::Foreign,
            Some(Step::CreateDatabase) if found.database == P::Ours => found.database = P::Foreign,
            _ => {}
        }
        let naming = backend.naming();
        let mut removal = Removal::default();
        let database = format!("database `{}`", naming.database_name(id));
        match found.database {
            Presence::Ours => {
                backend
                    .drop_database(id)
                    .await
                    .map_err(|e| (Step::DropDatabase, e))?;
                failpoint::reached(Step::DropDatabase.key());
                removal.removed.push(database);
            }
            Presence::Foreign => removal.left_alone.push(database),
            Presence::Absent => {}
        }
        let user = format!("user `{}`", naming.user_name(id));
        match found.user {
            Presence::Ours => {
                backend
                    .drop_user(id)
                    .await
                    .map_err(|e| (Step::DropUser, e))?;
                failpoint::reached(Step::DropUser.key());
                removal.removed.push(user);
            }
            Presence::Foreign => removal.left_alone.push(user),
            Presence::Absent => {}
        }
        if !removal.left_alone.is_empty() {
            tracing::warn!(
                tenant = %id,
                left_alone = ?removal.left_alone,
                "objects with this tenant's names carry no proof that Tenora made them for it; \
                 left in place"
            );
        }
        Ok(removal)
    }

    /// Removes what an abandoned `provisioning` row made and deletes the row (the caller holds
    /// the lease).
    pub(crate) async fn remove_abandoned(
        &self,
        id: &TenantId,
        row: &StoredTenant,
    ) -> Result<Removal> {
        let proof = self.proof_of(row);
        let slot = self.server_of(row)?;
        let removal = self
            .remove_proven(slot, id, &proof)
            .await
            .map_err(|(step, source)| Error::Drop {
                id: id.clone(),
                step,
                source: Box::new(source),
            })?;
        let mut conn = self.base_conn().await?;
        conn.registry_delete(self.table(), id.as_str(), row.token.as_deref())
            .await
            .map_err(|e| self.registry_error(e, id))?;
        Ok(removal)
    }

    /// Drops tenant `id`: closes its pool, drops its database and user — only where they carry
    /// the proof that Tenora made them for this registry row — and deletes its registry row.
    /// Objects with the tenant's names but without that proof are left in place and listed in
    /// the returned [`Removal`].
    ///
    /// Fails with [`Error::UnknownTenant`] when it is not registered and with
    /// [`Error::InProgress`] while another process creates, drops or repairs it. After a
    /// failure the tenant stays `deleting`: call it again (or [`Tenora::repair_tenant`]) to
    /// finish; each step skips what is already gone.
    ///
    /// ```no_run
    /// # async fn demo(tenora: tenora::SqliteTenora) -> tenora::Result<()> {
    /// let acme = tenora.tenant_id("acme")?;
    /// let removal = tenora.drop_tenant(&acme).await?;
    /// for object in &removal.left_alone {
    ///     eprintln!("left in place (not proven ours): {object}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn drop_tenant(&self, id: &TenantId) -> Result<Removal> {
        let started = std::time::Instant::now();
        let result = self
            .drop_tenant_steps(id)
            .instrument(tracing::info_span!("tenora.drop_tenant", tenant = %id))
            .await;
        crate::telemetry::tenant_dropped(
            self.metrics_tenant(id),
            started.elapsed(),
            result.as_ref().err(),
        );
        result
    }

    async fn drop_tenant_steps(&self, id: &TenantId) -> Result<Removal> {
        // Names are derived from the id and today's prefixes: never act on names that do not
        // fit (they could be truncated by the server onto someone else's database).
        self.check_names(id)?;
        let lease = self
            .lease(id)
            .await?
            .ok_or_else(|| Error::InProgress { id: id.clone() })?;
        let result = self.drop_leased(id).await;
        lease.release().await;
        result
    }

    pub(crate) async fn drop_leased(&self, id: &TenantId) -> Result<Removal> {
        let fail = |step: Step| {
            move |e: Error| Error::Drop {
                id: id.clone(),
                step,
                source: Box::new(e),
            }
        };
        let (row, malformed) = {
            let mut conn = self.base_conn().await?;
            let Some(found) = self.registry_get_for_drop(&mut conn, id).await? else {
                return Err(Error::UnknownTenant {
                    id: id.clone(),
                    state: None,
                });
            };
            // A row on a server the config does not list changes nothing (not even its
            // state): the config is what is wrong.
            self.server_of(&found.0)?;
            conn.registry_set_state(self.table(), id, None, TenantState::Deleting)
                .await
                .map_err(|e| fail(Step::MarkDeleting)(self.registry_error(e, id)))?;
            found
        };
        failpoint::reached(Step::MarkDeleting.key());
        self.evict(id);
        let mut proof = self.proof_of(&row);
        // A tampered row trusts nothing by name.
        proof.legacy &= !malformed;
        let slot = self.server_of(&row)?;
        let removal = self
            .remove_proven(slot, id, &proof)
            .await
            .map_err(|(step, e)| fail(step)(e))?;
        let mut conn = self.base_conn().await?;
        conn.registry_delete(self.table(), id.as_str(), row.token.as_deref())
            .await
            .map_err(|e| fail(Step::Unregister)(self.registry_error(e, id)))?;
        tracing::info!(tenant = %id, "tenant dropped");
        Ok(removal)
    }
}
