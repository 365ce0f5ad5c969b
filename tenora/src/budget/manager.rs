//! [`BudgetManager`]: a bb8 connection manager that counts every connection it opens against
//! the connection budget, and [`Budgeted`], a connection holding its permit.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use diesel_async::pooled_connection::PoolError;

use super::{Budget, Permit, Slice};

/// A connection that holds a budget permit for as long as it is open. Derefs to the
/// backend's diesel-async connection, so diesel-async queries take `&mut conn` as usual.
pub struct Budgeted<C> {
    /// Boxed: pools move their connections in and out of queues and through several futures
    /// on every checkout, and a diesel-async connection is large (the moves cost more than the
    /// rest of the hit path did; one allocation per connection opened is cheaper).
    conn: Box<C>,
    _permit: Permit,
    /// Close instead of going back to the pool (an idle connection given back to the budget).
    retired: bool,
    /// When the connection last went back to its pool, on the coarse clock (a checkout then
    /// reads one cheap clock instead of the fine one: this is on every hit).
    returned_at_ms: Option<u64>,
}

impl<C> fmt::Debug for Budgeted<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Connections may hold credentials: show nothing of them.
        f.debug_struct("Budgeted")
            .field("retired", &self.retired)
            .finish_non_exhaustive()
    }
}

impl<C> Deref for Budgeted<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.conn
    }
}

impl<C> DerefMut for Budgeted<C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.conn
    }
}

impl<C> Budgeted<C> {
    pub(crate) fn new(conn: C, permit: Permit) -> Self {
        Budgeted {
            conn: Box::new(conn),
            _permit: permit,
            retired: false,
            returned_at_ms: None,
        }
    }

    /// How long the connection has been idle in its pool (zero when it never was).
    pub(crate) fn idle_for(&self) -> std::time::Duration {
        self.returned_at_ms.map_or(std::time::Duration::ZERO, |t| {
            std::time::Duration::from_millis(crate::coarse_clock::now_ms().saturating_sub(t))
        })
    }

    /// Marks the connection to be closed when it is returned to its pool.
    pub(crate) fn retire(&mut self) {
        self.retired = true;
    }

    /// The connection and its permit, for code that must move the connection (migrations);
    /// keep the permit alive while the connection is open.
    pub(crate) fn into_parts(self) -> (C, Permit) {
        (*self.conn, self._permit)
    }
}

/// Why a budgeted pool could not open a connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError<E> {
    /// The connection budget is used up.
    Exhausted(String),
    /// The server refused the connection: it has no free connection slots. The budget shrank.
    Refused(String),
    /// Connecting failed.
    Connect(E),
    /// Not opened in the background: callers open this pool's connections themselves.
    Deferred,
}

impl<E: fmt::Display> fmt::Display for ConnectError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Exhausted(m) | ConnectError::Refused(m) => f.write_str(m),
            ConnectError::Connect(e) => e.fmt(f),
            ConnectError::Deferred => {
                f.write_str("connections of this pool are opened by the callers that need them")
            }
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for ConnectError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Exhausted(_) | ConnectError::Refused(_) | ConnectError::Deferred => None,
            ConnectError::Connect(e) => Some(e),
        }
    }
}

/// A bb8 manager that takes a budget permit for every connection it opens.
///
/// bb8 opens connections on background tasks that keep their pool alive while they run, one
/// for each caller waiting. Callers that need a connection open it themselves instead, waiting
/// for the budget in their own task, in line with everyone else, and hand it to the pool (see
/// `ManagedPool::get`). So this manager opens connections only to keep a pool's `min_idle`,
/// and never waits for the budget: it takes a free permit (after closing one idle pool, if
/// need be) or fails at once.
pub struct BudgetManager<M> {
    inner: Arc<M>,
    budget: Arc<Budget>,
    slice: Slice,
    in_background: bool,
}

impl<M> BudgetManager<M> {
    /// `in_background`: whether bb8 may open connections itself (to keep `min_idle`).
    pub(crate) fn new(
        inner: Arc<M>,
        budget: Arc<Budget>,
        slice: Slice,
        in_background: bool,
    ) -> Self {
        BudgetManager {
            inner,
            budget,
            slice,
            in_background,
        }
    }
}

impl<M: bb8::ManageConnection<Error = PoolError>> bb8::ManageConnection for BudgetManager<M> {
    type Connection = Budgeted<M::Connection>;
    type Error = ConnectError<M::Error>;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        if !self.in_background {
            return Err(ConnectError::Deferred);
        }
        let permit = self
            .budget
            .try_acquire(self.slice)
            .map_err(|e| ConnectError::Exhausted(e.to_string()))?;
        connect_with(&*self.inner, &self.budget, permit).await
    }

    async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        self.inner
            .is_valid(&mut conn.conn)
            .await
            .map_err(ConnectError::Connect)
    }

    /// Called by bb8 as a connection goes back to the pool.
    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        conn.returned_at_ms = Some(crate::coarse_clock::now_ms());
        conn.retired || self.inner.has_broken(&mut conn.conn)
    }
}

/// Opens a connection with `manager` under `permit`. A server out of connection slots makes
/// the budget shrink.
pub(crate) async fn connect_with<M: bb8::ManageConnection<Error = PoolError>>(
    manager: &M,
    budget: &Budget,
    permit: Permit,
) -> Result<Budgeted<M::Connection>, ConnectError<PoolError>> {
    match manager.connect().await {
        Ok(conn) => Ok(Budgeted::new(conn, permit)),
        Err(e) => Err(match budget.refusal(&e, permit) {
            Some(message) => ConnectError::Refused(message),
            None => ConnectError::Connect(e),
        }),
    }
}
