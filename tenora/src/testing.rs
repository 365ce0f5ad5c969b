//! A tenant for one test (cargo feature `testing`): created with a unique id on the configured
//! server, migrated and seeded like any tenant, and dropped when the value goes out of scope —
//! also when the test panics.
//!
//! ```no_run
//! # #[cfg(feature = "sqlite")]
//! # async fn demo(tenora: tenora::SqliteTenora) -> Result<(), Box<dyn std::error::Error>> {
//! use diesel_async::RunQueryDsl;
//! use tenora::testing::TestTenant;
//!
//! let tenant = TestTenant::create(&tenora).await?; // `test_<random>`, migrated
//! let mut conn = tenant.conn().await?;
//! diesel::sql_query("SELECT 1").execute(&mut conn).await?;
//! // Dropped here, database and user included; `drop_now().await` to see its errors.
//! # Ok(()) }
//! ```
//!
//! Dropping needs the server: on drop, the tenant is removed from a helper thread with its own
//! runtime and its own connections (a `Drop` cannot wait for the test's runtime), so it works
//! from `#[tokio::test]` with either runtime flavour. A failure there is printed, not raised.

use crate::backend::Backend;
use crate::error::Result;
use crate::ownership::Removal;
use crate::pool::PooledConn;
use crate::tenant_id::TenantId;
use crate::tenora::Tenora;

/// A tenant made for one test; dropped (database, user, registry row) with this value.
pub struct TestTenant<B: Backend> {
    tenora: Tenora<B>,
    id: TenantId,
    /// Already dropped by [`drop_now`](Self::drop_now).
    gone: bool,
}

impl<B: Backend> std::fmt::Debug for TestTenant<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestTenant").field("id", &self.id).finish()
    }
}

impl<B: Backend> TestTenant<B> {
    /// Creates a tenant named `test_<12 random hex digits>` with a generated password (short
    /// enough for MySQL's 32-character user names after a prefix).
    pub async fn create(tenora: &Tenora<B>) -> Result<Self> {
        let token = crate::ownership::new_token();
        let id = tenora.tenant_id(&format!("test_{}", &token[..12]))?;
        tenora.create_tenant(&id, None).await?;
        Ok(TestTenant {
            tenora: tenora.clone(),
            id,
            gone: false,
        })
    }

    /// The tenant's id.
    pub fn id(&self) -> &TenantId {
        &self.id
    }

    /// A pooled connection to the tenant's database ([`Tenora::tenant_conn`]).
    pub async fn conn(&self) -> Result<PooledConn<B>> {
        self.tenora.tenant_conn(&self.id).await
    }

    /// Drops the tenant now and reports how it went.
    pub async fn drop_now(mut self) -> Result<Removal> {
        self.gone = true;
        self.tenora.drop_tenant(&self.id).await
    }
}

impl<B: Backend> Drop for TestTenant<B> {
    fn drop(&mut self) {
        if self.gone {
            return;
        }
        // The test's pool of this tenant goes first (its connections would hold the database).
        self.tenora.evict(&self.id);
        let config = self.tenora.config().clone();
        let id = self.id.clone();
        let helper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                let tenora = Tenora::<B>::builder(config)
                    .connect()
                    .await
                    .map_err(|e| e.to_string())?;
                tenora
                    .drop_tenant(&id)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
        });
        match helper.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!(
                "tenora::testing: could not drop test tenant `{}`: {e}",
                self.id
            ),
            Err(_) => eprintln!(
                "tenora::testing: dropping test tenant `{}` panicked",
                self.id
            ),
        }
    }
}
