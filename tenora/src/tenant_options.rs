//! [`TenantOptions`]: how `create_tenant_with` makes a tenant.

use crate::secret::SecretString;

/// Options of [`Tenora::create_tenant_with`](crate::Tenora::create_tenant_with).
///
/// ```no_run
/// # async fn demo(tenora: tenora::PgTenora) -> tenora::Result<()> {
/// use tenora::TenantOptions;
/// let acme = tenora.tenant_id("acme")?;
/// // On server `eu-2` ([servers.eu-2] in the config), with a generated password.
/// tenora.create_tenant_with(&acme, TenantOptions::default().server("eu-2")).await?;
/// # Ok(()) }
/// ```
#[derive(Default)]
#[must_use]
pub struct TenantOptions {
    pub(crate) password: Option<SecretString>,
    pub(crate) server: Option<String>,
}

impl std::fmt::Debug for TenantOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantOptions")
            .field("password", &self.password.as_ref().map(|_| "<given>"))
            .field("server", &self.server)
            .finish()
    }
}

impl TenantOptions {
    /// The tenant user's password (default: a generated one). Backends without users
    /// (SQLite) refuse a password.
    pub fn password(mut self, password: SecretString) -> Self {
        self.password = Some(password);
        self
    }

    /// Places the tenant on server `name` (`default`, or a `[servers.<name>]`) instead of the
    /// least loaded one. The server must accept new tenants.
    pub fn server(mut self, name: impl Into<String>) -> Self {
        self.server = Some(name.into());
        self
    }
}
