//! Rotating a tenant's database password ([`Tenora::rotate_tenant_password`]) so that every
//! request keeps succeeding, and finishing a rotation that a crash interrupted.
//!
//! The registry holds both passwords while the server's changes (`tenora:rotating:<new>
//! <old>`): a connection tries the new one first and falls back to the old, so the tenant is
//! reachable before, during and after the change, and after a crash at any point. Connections
//! already open stay open (servers check passwords only when a session starts); a pool whose
//! password the server refuses is rebuilt from the registry on the spot.

use crate::backend::Backend;
use crate::backend::Server as _;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::pool::PooledConn;
use crate::registry::{RegistryConnection as _, StoredTenant, TenantState};
use crate::secret::{self, SecretString};
use crate::tenant_id::TenantId;
use crate::tenora::Tenora;

impl<B: Backend> Tenora<B> {
    /// Gives tenant `id`'s database user a new password — `password`, or a generated one —
    /// on the server (PostgreSQL: as a SCRAM verifier; MariaDB: as its hash; MySQL: in the
    /// statement) and seals it in the registry, without a failed request in between: until
    /// the registry holds only the new password, it holds both, and connections try the new
    /// one first. Sessions already open keep working; this process's pool of the tenant is
    /// replaced. A crash at any point leaves the tenant reachable; [`Tenora::repair_tenant`]
    /// (or the next rotation) finishes the job.
    ///
    /// Fails with [`Error::UnknownTenant`] unless the tenant is `active`, with
    /// [`Error::InProgress`] while another process creates, drops, repairs or rotates it, and
    /// with [`Error::Unsupported`] on SQLite (no database users).
    ///
    /// ```no_run
    /// # async fn demo(tenora: tenora::PgTenora) -> tenora::Result<()> {
    /// let acme = tenora.tenant_id("acme")?;
    /// tenora.rotate_tenant_password(&acme, None).await?; // a new generated password
    /// # Ok(()) }
    /// ```
    pub async fn rotate_tenant_password(
        &self,
        id: &TenantId,
        password: Option<SecretString>,
    ) -> Result<()> {
        if !self.uses_passwords() {
            return Err(Error::Unsupported(format!(
                "tenant `{id}` has no database user of its own on this backend, so it has no \
                 password to rotate"
            )));
        }
        let password = match password {
            Some(password) => {
                secret::check_password(password.expose())?;
                password
            }
            None => secret::generate_password(),
        };
        let allow_plaintext = self.config().secrets.allow_plaintext;
        let sealed = secret::seal(self.keys(), allow_plaintext, id, password.expose())?;
        let Some(lease) = self.lease(id).await? else {
            return Err(Error::InProgress { id: id.clone() });
        };
        let result = async {
            let mut conn = self.base_conn().await?;
            let stored_row = self.active_row(&mut conn, id).await?;
            // A row on a server the config does not list changes nothing.
            let slot = self.server_of(&stored_row)?;
            // An earlier rotation that did not finish: finish it first, so the value kept as
            // "old" below is the one the server has.
            let stored = match self.finish_rotation(&mut conn, id, &stored_row).await? {
                Some(finished) => finished,
                None => stored_row.password.clone().unwrap_or_default(),
            };
            let rotating = secret::rotating_value(&sealed, &stored);
            self.swap(&mut conn, id, &stored, &rotating).await?;
            failpoint::reached("rotate_registered");
            if let Err(e) = slot.server.set_password(id, &password).await {
                // The server may have taken the new password all the same (a connection lost
                // after the statement committed): the registry keeps both, which works either
                // way, and repair finishes the rotation.
                tracing::warn!(
                    tenant = %id,
                    "password rotation interrupted; the registry keeps both passwords until \
                     `tenora tenants repair` finishes it"
                );
                return Err(e);
            }
            failpoint::reached("rotate_server");
            // New connections of this process use the new password from here on.
            self.evict(id);
            self.swap(&mut conn, id, &rotating, &sealed).await?;
            tracing::info!(tenant = %id, "tenant password rotated");
            Ok(())
        }
        .await;
        lease.release().await;
        result
    }

    /// Finishes the password rotation recorded in `row`, if one is: the server gets the new
    /// password (again: it may or may not have it), then the registry keeps only that one.
    /// Returns the stored value afterwards, or `None` when no rotation was in progress. The
    /// caller holds the tenant's lease.
    pub(crate) async fn finish_rotation(
        &self,
        conn: &mut PooledConn<B>,
        id: &TenantId,
        row: &StoredTenant,
    ) -> Result<Option<String>> {
        let Some(stored) = row.password.as_deref() else {
            return Ok(None);
        };
        let Some((new, _old)) = secret::split_rotating(stored) else {
            return Ok(None);
        };
        let allow_plaintext = self.config().secrets.allow_plaintext;
        let password = secret::open(self.keys(), allow_plaintext, id, new)?;
        self.server_of(row)?
            .server
            .set_password(id, &password)
            .await?;
        self.evict(id);
        self.swap(conn, id, stored, new).await?;
        tracing::info!(tenant = %id, "interrupted password rotation finished");
        Ok(Some(new.to_owned()))
    }

    /// The tenant's row, which must be `active` with a password.
    async fn active_row(&self, conn: &mut PooledConn<B>, id: &TenantId) -> Result<StoredTenant> {
        match self.registry_get_on(conn, id).await? {
            Some(row) if row.record.state == TenantState::Active && row.password.is_some() => {
                Ok(row)
            }
            Some(row) if row.record.state == TenantState::Active => Err(Error::Unsupported(
                format!("tenant `{id}` has no stored password in the registry"),
            )),
            other => Err(Error::UnknownTenant {
                id: id.clone(),
                state: other.map(|row| row.record.state),
            }),
        }
    }

    /// Replaces the row's stored password `from` with `to`, or fails with a conflict when
    /// another process changed it meanwhile.
    async fn swap(
        &self,
        conn: &mut PooledConn<B>,
        id: &TenantId,
        from: &str,
        to: &str,
    ) -> Result<()> {
        let swapped = conn
            .registry_swap_password(self.table(), id, from, to)
            .await
            .map_err(|e| self.registry_error(e, id))?;
        if swapped == 1 {
            Ok(())
        } else {
            Err(Error::Conflict {
                id: id.clone(),
                message: "its stored password changed during the password rotation (another \
                          process?); run it again"
                    .to_owned(),
            })
        }
    }
}
