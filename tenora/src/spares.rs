//! Warm spares (PostgreSQL, `tenant.spares = N`): tenants made ahead, so a sign-up costs a
//! rename instead of a clone.
//!
//! A spare is a clone of the current template owned by a login-less role of its own, locked
//! down and closed to connections, named from a reserved id (`tenora_spare_<hex>`) and
//! recorded in the spare table (`spare_table`) before anything is made. `create_tenant` claims
//! a `ready` spare built for this binary's tenant migrations, then, in one server transaction,
//! renames its database and role to the tenant's names, makes the role carry the tenant's
//! proof and password and opens the database; the result is what cloning would have made.
//! The spare set refills in the background, one spare at a time on an admin session (inside
//! the connection budget).
//!
//! Every step is recorded before it is taken, so a crash leaves a row that says what to
//! look for. A spare row in `making` or `dropping` whose lease is free, or `claimed` by a
//! tenant whose lease is free, was abandoned: the sweep (`fill_spares`, `repair_all`) removes
//! what carries the spare's proof under the spare's names — never the tenant's names, which
//! the tenant's own registry row accounts for — and deletes the row.

use std::sync::Arc;

use chrono::NaiveDateTime;

use crate::backend::{Backend, Made, Server as _};
use crate::error::{Error, Result};
use crate::lifecycle::Step;
use crate::ownership::{self, Proof};
use crate::provision::NewPassword;
use crate::secret;
use crate::servers::ServerSlot;
use crate::spare_table::{SpareConnection as _, SpareRow};
use crate::tenant_id::TenantId;
use crate::tenora::Tenora;

/// The start of every spare's id (reserved: no tenant may use it).
pub(crate) const SPARE_PREFIX: &str = "tenora_spare_";

/// What the sweep did with one spare.
enum Swept {
    Removed,
    /// A live process works on it.
    Busy,
    /// Its row changed since it was read: left to its new owner.
    Moved,
}

/// Where a warm spare is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SpareState {
    /// Being cloned (or abandoned half-way by a crash).
    Making,
    /// Ready to be handed to a new tenant.
    Ready,
    /// Being handed over to the tenant in `claimed_by`.
    Claimed,
    /// Being removed (built for older migrations).
    Dropping,
}

impl SpareState {
    fn as_str(self) -> &'static str {
        match self {
            SpareState::Making => "making",
            SpareState::Ready => "ready",
            SpareState::Claimed => "claimed",
            SpareState::Dropping => "dropping",
        }
    }

    fn parse(text: &str) -> Option<SpareState> {
        [
            SpareState::Making,
            SpareState::Ready,
            SpareState::Claimed,
            SpareState::Dropping,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for SpareState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One warm spare, as recorded in the base database.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Spare {
    /// Its reserved id; its database and role are named from it like a tenant's.
    pub name: String,
    /// The server it is on.
    pub server: String,
    /// Its state (`None`: a state this version does not know).
    pub state: Option<SpareState>,
    /// Whether it was built for this binary's tenant migrations (only those are handed out).
    pub current: bool,
    /// The tenant it is being handed to (state `claimed`).
    pub claimed_by: Option<String>,
    /// When it was recorded (UTC).
    pub created_at: NaiveDateTime,
    /// When its state last changed (UTC).
    pub updated_at: NaiveDateTime,
}

/// What [`Tenora::fill_spares`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SpareFill {
    /// Spares made.
    pub made: usize,
    /// Spares removed: built for other tenant migrations, or abandoned by a crash.
    pub removed: Vec<String>,
    /// Spares ready (or being made by another process) afterwards, over all servers.
    pub ready: usize,
    /// Why fewer spares than `tenant.spares` are ready, if so (e.g. no current template).
    pub short: Option<String>,
}

impl<B: Backend> Tenora<B> {
    /// The warm spares recorded in the base database (none before the first fill).
    ///
    /// ```no_run
    /// # async fn demo(tenora: tenora::PgTenora) -> tenora::Result<()> {
    /// for spare in tenora.spares().await? {
    ///     println!("{} on {}: {:?}", spare.name, spare.server, spare.state);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn spares(&self) -> Result<Vec<Spare>> {
        let fingerprint = self.tenant_migrations().fingerprint();
        Ok(self
            .spare_rows()
            .await?
            .into_iter()
            .map(|row| Spare {
                current: row.fingerprint == fingerprint,
                state: SpareState::parse(&row.state),
                name: row.name,
                server: row.server,
                claimed_by: row.claimed_by,
                created_at: row.created_at,
                updated_at: row.updated_at,
            })
            .collect())
    }

    /// Tops up the warm spares (`tenant.spares`, PostgreSQL with `tenant.template`) on every
    /// server that takes new tenants: first removes the spares a crash abandoned, those built
    /// for other tenant migrations (once the template is built for this binary's: until then
    /// they belong to the binary that built it, say during a rolling deploy) and any beyond
    /// `tenant.spares`, then clones the template until `tenant.spares` are ready.
    /// Needs an up-to-date template ([`Tenora::prepare_template`]); without one it makes
    /// nothing and says so in [`SpareFill::short`]. Waits for a fill already running (in this
    /// process, or up to a minute in another); `create_tenant` starts one in the background
    /// after each sign-up.
    ///
    /// ```no_run
    /// # async fn demo(tenora: tenora::PgTenora) -> tenora::Result<()> {
    /// tenora.prepare_template().await?;
    /// let fill = tenora.fill_spares().await?;
    /// println!("{} made, {} ready", fill.made, fill.ready);
    /// # Ok(()) }
    /// ```
    pub async fn fill_spares(&self) -> Result<SpareFill> {
        let mut fill = SpareFill::default();
        let wanted = self.config().tenant.spares;
        let slots: Vec<_> = self.servers().all().iter().map(Arc::clone).collect();
        let any_spares = wanted > 0 && slots.iter().any(|s| s.server.supports_spares());
        if !any_spares && !self.spare_table_exists().await? {
            return Ok(fill);
        }
        self.prepare_spare_table().await?;
        for slot in slots {
            let _filling = slot.filling.lock().await;
            self.fill_on(&slot, wanted, true, &mut fill).await?;
        }
        Ok(fill)
    }

    /// Removes the warm spares a crash abandoned (being made, handed over or removed by no
    /// live process) and, on servers whose template is built for this binary's tenant
    /// migrations, those built for other migrations; makes none. Returns the names removed.
    /// A spare that cannot be removed is logged and left for the next sweep.
    /// [`Tenora::repair_all`] and [`Tenora::fill_spares`] sweep too.
    pub async fn sweep_spares(&self) -> Result<Vec<String>> {
        if !self.spare_table_exists().await? {
            return Ok(Vec::new());
        }
        let mut fill = SpareFill::default();
        let keep = (self.config().tenant.spares == 0).then_some(0);
        for slot in self.servers().all() {
            let _filling = slot.filling.lock().await;
            self.sweep_on(slot, keep, &mut fill).await?;
        }
        Ok(fill.removed)
    }

    /// Hands a ready spare on `slot` to tenant `id` (whose `provisioning` row carries
    /// `token`); records in `made` what exists. Returns `false` — and the caller clones — when
    /// spares are off or none is ready. A spare is an optimisation: a base database that
    /// cannot be read for one is logged, not fatal. The caller refills once the sign-up is
    /// over ([`Tenora::refill_later`]), so the refill does not compete with it.
    pub(crate) async fn take_spare(
        &self,
        slot: &Arc<ServerSlot<B>>,
        id: &TenantId,
        credentials: &mut NewPassword,
        token: &str,
        made: &mut Made,
    ) -> std::result::Result<bool, (Step, Error)> {
        if credentials.password.is_none()
            || self.config().tenant.spares == 0
            || !slot.server.supports_spares()
        {
            return Ok(false);
        }
        let Some(row) = self.claim_spare(slot, id).await else {
            return Ok(false);
        };
        crate::failpoint::reached("spare_claimed");
        let Ok(spare) = TenantId::new(&row.name) else {
            return Ok(false);
        };
        // A generated password is replaced by the spare's, whose verifier the server already
        // holds; a password the caller chose is set.
        let adopted = credentials.generated && self.adopt_password(id, &spare, &row, credentials);
        let password = credentials.password.as_ref().filter(|_| !adopted);
        match slot
            .server
            .take_spare(&spare, &row.token, id, password, token)
            .await
        {
            Ok(true) => {
                made.user = true;
                made.database = true;
                crate::failpoint::reached("spare_taken");
                // Its objects now carry the tenant's names and proof: the row has nothing
                // left to account for. Deleted off the sign-up's path; left behind (the
                // process ended first), the next sweep deletes it.
                let (this, name) = (self.clone(), row.name.clone());
                tokio::spawn(async move {
                    if let Err(e) = this.delete_spare_row(&name).await {
                        tracing::warn!(spare = %name, error = %e, "could not delete a used spare's row");
                    }
                });
                Ok(true)
            }
            // Its objects (or some of them) are gone: the row stays `claimed`, so the sweep
            // removes whatever is left with the spare's proof.
            Ok(false) => Ok(false),
            Err((step, e)) => {
                // The transaction rolled back: a spare refused for a taken name is intact.
                if matches!(e, Error::TenantExists { .. })
                    && let Err(put) = self
                        .move_spare(&row.name, "claimed", Some(id.as_str()), "ready", None)
                        .await
                {
                    tracing::warn!(spare = %row.name, error = %put, "could not put a spare back");
                }
                Err((step, e))
            }
        }
    }

    /// Makes spare `row`'s password tenant `id`'s, in `credentials` (the registry row gets it
    /// sealed for the tenant when it is activated). Returns `false`, changing nothing, when
    /// the spare's password cannot be opened (its key was removed from the ring).
    fn adopt_password(
        &self,
        id: &TenantId,
        spare: &TenantId,
        row: &SpareRow,
        credentials: &mut NewPassword,
    ) -> bool {
        let allow_plaintext = self.config().secrets.allow_plaintext;
        let adopt =
            secret::open(self.keys(), allow_plaintext, spare, &row.password).and_then(|password| {
                secret::seal(self.keys(), allow_plaintext, id, password.expose())
                    .map(|sealed| (password, sealed))
            });
        match adopt {
            Ok((password, sealed)) => {
                credentials.password = Some(password);
                credentials.adopted = Some(sealed);
                true
            }
            Err(e) => {
                tracing::info!(tenant = %id, spare = %spare, error = %e, "the spare's password was not adopted; setting the tenant's");
                false
            }
        }
    }

    /// Claims the oldest ready spare on `slot` built for this binary's migrations for `id`.
    async fn claim_spare(&self, slot: &ServerSlot<B>, id: &TenantId) -> Option<SpareRow> {
        let fingerprint = self.tenant_migrations().fingerprint();
        let claim = async {
            let mut conn = self.base_conn().await?;
            conn.spares_claim(self.table(), &slot.name, &fingerprint, id.as_str())
                .await
                .map_err(|e| Error::db("cannot claim a warm spare", e))
        };
        match claim.await {
            Ok(row) => row,
            Err(e) => {
                // No table yet (never filled), or the base database failing: clone instead.
                tracing::warn!(tenant = %id, error = %e, "no warm spare taken; cloning");
                None
            }
        }
    }

    /// After a sign-up on `slot`: starts a fill of its spares on a task of its own, unless
    /// spares are off there or a fill is running.
    pub(crate) fn refill_later(&self, slot: &Arc<ServerSlot<B>>) {
        if self.config().tenant.spares == 0 || !slot.server.supports_spares() {
            return;
        }
        let (this, slot) = (self.clone(), Arc::clone(slot));
        tokio::spawn(async move {
            let Ok(_filling) = slot.filling.try_lock() else {
                return;
            };
            let mut fill = SpareFill::default();
            let wanted = this.config().tenant.spares;
            let result = async {
                this.prepare_spare_table().await?;
                this.fill_on(&slot, wanted, false, &mut fill).await
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(server = %slot.name, error = %e, "could not refill the warm spares");
            }
        });
    }

    /// Sweeps `slot`, then makes spares until `wanted` are ready (or being made elsewhere).
    /// The caller holds `slot.filling`; across processes, one fills a server at a time (its
    /// fill lease), so replicas refilling after the same burst do not all clone the
    /// shortfall. With `wait`, waits for another process's fill (up to a minute); without,
    /// leaves the server to it.
    async fn fill_on(
        &self,
        slot: &ServerSlot<B>,
        wanted: u32,
        wait: bool,
        fill: &mut SpareFill,
    ) -> Result<()> {
        let id = TenantId::new(format!(
            "{SPARE_PREFIX}fill_{:016x}",
            crate::backend::stable_hash(&[&slot.name])
        ))
        .expect("a valid id");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let lease = loop {
            match self.lease(&id).await? {
                Some(lease) => break lease,
                None if wait && std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                None => {
                    fill.short = Some(format!(
                        "another process is filling the spares of server `{}`",
                        slot.name
                    ));
                    return Ok(());
                }
            }
        };
        let result = self.fill_leased(slot, wanted, fill).await;
        lease.release().await;
        result
    }

    /// [`Tenora::fill_on`], holding the server's fill lease.
    async fn fill_leased(
        &self,
        slot: &ServerSlot<B>,
        wanted: u32,
        fill: &mut SpareFill,
    ) -> Result<()> {
        let mut ready = self.sweep_on(slot, Some(wanted as usize), fill).await?;
        if !slot.accepts_new || !slot.server.supports_spares() {
            fill.ready += ready;
            return Ok(());
        }
        while ready < wanted as usize {
            if !self.make_spare(slot).await? {
                fill.short = Some(format!(
                    "the template on server `{}` is missing, built for other tenant migrations \
                     or being rebuilt: run `tenora migrate:tenants` (or `prepare_template`)",
                    slot.name
                ));
                break;
            }
            fill.made += 1;
            ready += 1;
        }
        fill.ready += ready;
        Ok(())
    }

    /// Removes `slot`'s abandoned spares, those built for other migrations (once the template
    /// is this binary's) and, with `keep`, ready ones beyond that many (`tenant.spares` was
    /// lowered; with 0, every spare); returns how many current spares are ready or being made
    /// by a live process. A spare that cannot be removed is logged and left for the next
    /// sweep, so one stuck spare never stops the others (nor the refill).
    async fn sweep_on(
        &self,
        slot: &ServerSlot<B>,
        keep: Option<usize>,
        fill: &mut SpareFill,
    ) -> Result<usize> {
        let fingerprint = self.tenant_migrations().fingerprint();
        // Spares of other migrations go only once they can be replaced: while the template is
        // built for other migrations (a rolling deploy: the other binary's), they are the
        // other binary's spares.
        let replaceable = slot.server.supports_spares()
            && match slot.server.template_fingerprint().await {
                Ok(built) => built.as_deref() == Some(fingerprint.as_str()),
                Err(e) => {
                    tracing::warn!(server = %slot.name, error = %e, "cannot read the template's label; spares of other migrations are kept");
                    false
                }
            };
        let mut ready = 0;
        for row in self.spare_rows().await? {
            if row.server != slot.name {
                continue;
            }
            let Ok(spare) = TenantId::new(&row.name) else {
                tracing::warn!(spare = %row.name, "a spare row with an invalid name; left alone");
                continue;
            };
            let current = row.fingerprint == fingerprint;
            let state = SpareState::parse(&row.state);
            match state {
                Some(SpareState::Ready) if current && keep.is_none_or(|keep| ready < keep) => {
                    ready += 1;
                    continue;
                }
                Some(SpareState::Ready) if !current && !replaceable && keep != Some(0) => continue,
                None => {
                    tracing::warn!(spare = %row.name, state = %row.state, "a spare in an unknown state; left alone");
                    continue;
                }
                _ => {}
            }
            match self.sweep_one(slot, &spare, &row).await {
                Ok(Swept::Removed) => fill.removed.push(row.name.clone()),
                Ok(Swept::Busy) if state == Some(SpareState::Making) && current => ready += 1,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(spare = %row.name, error = %e, "could not remove a warm spare; the next sweep tries again");
                }
            }
        }
        Ok(ready)
    }

    /// Removes spare `row` (read earlier) unless a live process works on it or its row moved
    /// since: every step re-checks the state it read, under the lease that keeps the owner of
    /// that state off it.
    async fn sweep_one(
        &self,
        slot: &ServerSlot<B>,
        spare: &TenantId,
        row: &SpareRow,
    ) -> Result<Swept> {
        let claimed = row.state == SpareState::Claimed.as_str();
        if claimed {
            // A hand-over is in progress while its tenant's lease is held. Moved to
            // `dropping` under that lease, then released at once: a retried sign-up of the
            // tenant is not kept waiting for the removal.
            let Some(tenant) = row
                .claimed_by
                .as_deref()
                .and_then(|t| TenantId::new(t).ok())
            else {
                tracing::warn!(spare = %row.name, "a claimed spare without a valid tenant; left alone");
                return Ok(Swept::Busy);
            };
            let Some(lease) = self.lease(&tenant).await? else {
                return Ok(Swept::Busy);
            };
            let moved = self
                .move_spare(
                    &row.name,
                    "claimed",
                    Some(tenant.as_str()),
                    "dropping",
                    None,
                )
                .await;
            lease.release().await;
            if moved? != 1 {
                return Ok(Swept::Moved);
            }
        }
        let Some(lease) = self.lease(spare).await? else {
            return Ok(Swept::Busy);
        };
        let result = async {
            if !claimed
                && row.state != SpareState::Dropping.as_str()
                && self
                    .move_spare(&row.name, &row.state, None, "dropping", None)
                    .await?
                    != 1
            {
                // Made ready, or claimed by a sign-up, since it was read.
                return Ok(Swept::Moved);
            }
            self.remove_spare(slot, spare, &row.token)
                .await
                .map(|()| Swept::Removed)
        }
        .await;
        lease.release().await;
        result
    }

    /// Makes one spare on `slot`: records it, clones it, marks it ready. Returns `false`
    /// (leaving nothing) when the template is not current.
    async fn make_spare(&self, slot: &ServerSlot<B>) -> Result<bool> {
        // Fits every configuration: prefixes have at most 32 characters, so a spare's names
        // have at most 57 of PostgreSQL's 63.
        let spare = TenantId::new(format!("{SPARE_PREFIX}{}", &ownership::new_token()[..12]))
            .expect("a valid id");
        let token = ownership::new_token();
        let password = secret::generate_password();
        let sealed = secret::seal(
            self.keys(),
            self.config().secrets.allow_plaintext,
            &spare,
            password.expose(),
        )?;
        let fingerprint = self.tenant_migrations().fingerprint();
        let lease = self
            .lease(&spare)
            .await?
            .ok_or_else(|| Error::InProgress { id: spare.clone() })?;
        let result = async {
            {
                let mut conn = self.base_conn().await?;
                conn.spares_insert(
                    self.table(),
                    spare.as_str(),
                    &slot.name,
                    &token,
                    &sealed,
                    &fingerprint,
                )
                    .await
                    .map_err(|e| Error::db("cannot record a new warm spare", e))?;
            }
            let made = slot
                .server
                .make_spare(&spare, &token, &password, &fingerprint)
                .await;
            let made = match made {
                Ok(true) => {
                    crate::failpoint::reached("spare_made");
                    match self
                        .move_spare(spare.as_str(), "making", None, "ready", None)
                        .await
                    {
                        Ok(1) => Ok(true),
                        Ok(_) => Err(Error::Conflict {
                            id: spare.clone(),
                            message: "the warm spare's row was changed while it was being \
                                      made (removed by hand?)"
                                .to_owned(),
                        }),
                        Err(e) => Err(e),
                    }
                }
                other => other,
            };
            if !matches!(made, Ok(true))
                && let Err(e) = self.remove_spare(slot, &spare, &token).await
            {
                tracing::warn!(spare = %spare, error = %e, "could not remove a spare that failed half-way; the next fill does");
            }
            made
        }
        .await;
        lease.release().await;
        if let Ok(true) = result {
            tracing::info!(spare = %spare, server = %slot.name, "warm spare made");
        }
        result
    }

    /// Removes what carries the proof of `token` under spare `spare`'s names, then its row
    /// (the caller holds the lease that keeps others off it).
    async fn remove_spare(
        &self,
        slot: &ServerSlot<B>,
        spare: &TenantId,
        token: &str,
    ) -> Result<()> {
        let proof = Proof {
            token: Some(token.to_owned()),
            passwords: Vec::new(),
            legacy: false,
        };
        let removal = self
            .remove_proven(slot, spare, &proof)
            .await
            .map_err(|(step, source)| Error::Drop {
                id: spare.clone(),
                step,
                source: Box::new(source),
            })?;
        if !removal.left_alone.is_empty() {
            tracing::warn!(spare = %spare, left_alone = ?removal.left_alone, "objects with a spare's names that do not carry its proof were left alone");
        }
        self.delete_spare_row(spare.as_str()).await?;
        tracing::info!(spare = %spare, server = %slot.name, "warm spare removed");
        Ok(())
    }

    /// Re-seals the warm spares' passwords with the current key (part of
    /// [`Tenora::rotate_key`]): each write a compare-and-swap on the value read. Returns
    /// (re-sealed, unreadable). A spare whose password no configured key opens is left as it
    /// is: taking it sets the tenant's own password instead of adopting the spare's.
    pub(crate) async fn reseal_spares(&self) -> Result<(usize, usize)> {
        let keys = self.keys();
        let Some(current) = keys.current() else {
            return Ok((0, 0));
        };
        let current_id = current.id();
        let allow_plaintext = self.config().secrets.allow_plaintext;
        let (mut resealed, mut unreadable) = (0, 0);
        let rows = self.spare_rows().await?;
        if rows.is_empty() {
            return Ok((0, 0));
        }
        let mut conn = self.base_conn().await?;
        for row in rows {
            if secret::sealed_with(&row.password, &current_id) {
                continue;
            }
            let Ok(spare) = TenantId::new(&row.name) else {
                continue;
            };
            let sealed =
                secret::open(keys, allow_plaintext, &spare, &row.password).and_then(|password| {
                    secret::seal(keys, allow_plaintext, &spare, password.expose())
                });
            let Ok(sealed) = sealed else {
                tracing::warn!(spare = %spare, "a warm spare's password opens with no configured key; left as it is");
                unreadable += 1;
                continue;
            };
            let swapped = conn
                .spares_swap_password(&row.name, &row.password, &sealed)
                .await
                .map_err(|e| {
                    Error::db(
                        format!("cannot re-seal the warm spare `{spare}`'s password"),
                        e,
                    )
                })?;
            // 0: taken or removed meanwhile (its password went with it).
            resealed += swapped;
        }
        Ok((resealed, unreadable))
    }

    /// How many spare passwords the current key seals, another configured key (or none: plain
    /// text) seals, and no configured key opens — for [`Tenora::key_status`].
    pub(crate) async fn spare_key_counts(&self) -> Result<(usize, usize, usize)> {
        let keys = self.keys();
        let current_id = keys.current().map(|k| k.id());
        let allow_plaintext = self.config().secrets.allow_plaintext;
        let (mut current, mut other, mut unreadable) = (0, 0, 0);
        for row in self.spare_rows().await? {
            if current_id
                .as_deref()
                .is_some_and(|id| secret::sealed_with(&row.password, id))
            {
                current += 1;
                continue;
            }
            let opens = TenantId::new(&row.name).is_ok_and(|spare| {
                secret::open(keys, allow_plaintext, &spare, &row.password).is_ok()
            });
            if opens {
                other += 1;
            } else {
                unreadable += 1;
            }
        }
        Ok((current, other, unreadable))
    }

    /// Every spare row (none when the table was never made).
    pub(crate) async fn spare_rows(&self) -> Result<Vec<SpareRow>> {
        self.spare_rows_of(Some(self.table())).await
    }

    /// The spare rows of deployment `scope`, or of every deployment sharing the base database
    /// (none when the table was never made).
    pub(crate) async fn spare_rows_of(&self, scope: Option<&str>) -> Result<Vec<SpareRow>> {
        if !self.spare_table_exists().await? {
            return Ok(Vec::new());
        }
        let mut conn = self.base_conn().await?;
        conn.spares_all(scope)
            .await
            .map_err(|e| Error::db("cannot read the warm spares", e))
    }

    async fn spare_table_exists(&self) -> Result<bool> {
        use crate::registry::RegistryConnection as _;
        let mut conn = self.base_conn().await?;
        conn.table_exists(crate::spare_table::SPARES_TABLE)
            .await
            .map_err(|e| self.registry_error_any(e, "cannot look for the warm-spare table"))
    }

    /// Makes the spare table if missing. Two processes making it at once can collide in the
    /// catalog; the loser's second attempt finds it made.
    async fn prepare_spare_table(&self) -> Result<()> {
        let mut conn = self.base_conn().await?;
        if conn.spares_prepare().await.is_err() {
            conn.spares_prepare()
                .await
                .map_err(|e| Error::db("cannot make the warm-spare table", e))?;
        }
        Ok(())
    }

    async fn move_spare(
        &self,
        name: &str,
        from: &str,
        was_claimed_by: Option<&str>,
        to: &str,
        claimed_by: Option<&str>,
    ) -> Result<usize> {
        let mut conn = self.base_conn().await?;
        conn.spares_move(name, from, was_claimed_by, to, claimed_by)
            .await
            .map_err(|e| Error::db(format!("cannot move the warm spare `{name}` to `{to}`"), e))
    }

    async fn delete_spare_row(&self, name: &str) -> Result<()> {
        let mut conn = self.base_conn().await?;
        conn.spares_delete(name)
            .await
            .map(|_| ())
            .map_err(|e| Error::db(format!("cannot delete the warm spare `{name}`'s row"), e))
    }
}
