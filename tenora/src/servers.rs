//! The database servers of one `Tenora`: each with its own connection budget and admin
//! sessions, so a busy or unreachable server cannot starve the others, and the placement of new
//! tenants over them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{Backend, Server as _};
use crate::budget::plan::BudgetPlan;
use crate::budget::{Budget, Reclaim};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::pool::ManagedPool;
use crate::pool_cache::{BudgetReclaimer, PoolCache};
use crate::server_config::DEFAULT_SERVER;

/// One configured server, as Tenora uses it.
pub(crate) struct ServerSlot<B: Backend> {
    pub(crate) name: String,
    pub(crate) server: B::Server,
    pub(crate) budget: Arc<Budget>,
    pub(crate) weight: u32,
    pub(crate) accepts_new: bool,
    /// Held while this process fills the server's warm spares (one fill at a time).
    pub(crate) filling: tokio::sync::Mutex<()>,
    /// Kept alive for the budget, which holds it weakly.
    _reclaimer: Arc<dyn Reclaim>,
}

impl<B: Backend> std::fmt::Debug for ServerSlot<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSlot")
            .field("name", &self.name)
            .field("weight", &self.weight)
            .field("accepts_new", &self.accepts_new)
            .finish_non_exhaustive()
    }
}

type TenantPools<B> = PoolCache<Arc<ManagedPool<B>>>;

impl<B: Backend> ServerSlot<B> {
    /// Builds server `name` of `config` with the budget `plan`; its pools in `pools` are what
    /// the budget reclaims when it runs short.
    fn new(
        name: &str,
        server: B::Server,
        plan: BudgetPlan,
        config: &Config,
        pools: &Arc<TenantPools<B>>,
    ) -> Self {
        let (weight, accepts_new, _) = config.placement_of(name);
        let budget = Budget::new(plan, Duration::from_secs(config.pool_cache.acquire_timeout));
        let reclaimer: Arc<dyn Reclaim> = Arc::new(BudgetReclaimer {
            cache: Arc::downgrade(pools),
            budget_key: Arc::as_ptr(&budget) as usize,
        });
        budget.set_reclaimer(Arc::downgrade(&reclaimer));
        ServerSlot {
            name: name.to_owned(),
            server,
            budget,
            weight,
            accepts_new,
            filling: tokio::sync::Mutex::new(()),
            _reclaimer: reclaimer,
        }
    }
}

/// Connects to `server`'s home database, learns what shapes names, and reads its limits
/// unless the budget is configured (`max`).
async fn probe<B: Backend>(
    server: &B::Server,
    max: Option<u32>,
) -> Result<Option<crate::budget::plan::ServerLimits>> {
    let mut first = server.connect_base().await?;
    server.learn_server(&mut first).await?;
    match max {
        Some(_) => Ok(None),
        None => server.server_limits(&mut first).await,
    }
}

/// Runs `futures` concurrently on the current task; their outputs in order.
async fn join_all<T>(
    mut futures: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + '_>>>,
) -> Vec<T> {
    let mut outputs: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// The servers, the default one (holding the base database) first.
pub(crate) struct Servers<B: Backend> {
    slots: Vec<Arc<ServerSlot<B>>>,
}

impl<B: Backend> Servers<B> {
    /// The default server, built by the caller (who keeps its first connection for the base
    /// pool), then every `[servers.<name>]`: each is asked for its limits; one that does not
    /// answer still joins (its tenants fail until it does), with a warning.
    pub(crate) async fn build(
        config: &Config,
        default: (B::Server, BudgetPlan),
        pools: &Arc<TenantPools<B>>,
    ) -> Result<Self> {
        let mut slots = vec![Arc::new(ServerSlot::new(
            DEFAULT_SERVER,
            default.0,
            default.1,
            config,
            pools,
        ))];
        // Every server is asked at once: one that does not answer costs one connect
        // timeout at start, however many there are.
        let mut built = Vec::new();
        for name in config.server_names().into_iter().skip(1) {
            let server_config = config.for_server(name)?;
            let server =
                B::Server::from_config(&server_config).map_err(|e| e.under_server(name))?;
            built.push((name, server_config, server));
        }
        let probes = built
            .iter()
            .map(|(_, server_config, server)| {
                Box::pin(probe::<B>(server, server_config.pool_cache.max_connections))
                    as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send + '_>>
            })
            .collect();
        let answers = join_all(probes).await;
        let mut built_slots = Vec::new();
        for ((name, mut server_config, server), answer) in built.into_iter().zip(answers) {
            let limits = match answer {
                Ok(limits) => limits,
                Err(e) if !matches!(e, Error::Connect { .. }) => return Err(e),
                Err(e) => {
                    let least = BudgetPlan::minimum(B::ADMIN_CONNECTIONS, 0);
                    tracing::warn!(
                        server = name,
                        error = %crate::config::redact_url(&e.to_string()),
                        "a tenant server does not answer: its tenants fail until it does; \
                         without servers.{name}.max_connections its budget is the smallest \
                         workable one ({least}) until Tenora restarts"
                    );
                    server_config
                        .pool_cache
                        .max_connections
                        .get_or_insert(least);
                    None
                }
            };
            let plan = BudgetPlan::new(&server_config, B::ADMIN_CONNECTIONS, limits)
                .map_err(|e| e.under_server(name))?;
            tracing::info!(server = name, "{plan}");
            built_slots.push(Arc::new(ServerSlot::new(name, server, plan, config, pools)));
        }
        slots.extend(built_slots);
        Ok(Servers { slots })
    }

    /// The server of the base database.
    pub(crate) fn default_slot(&self) -> &Arc<ServerSlot<B>> {
        &self.slots[0]
    }

    /// Every server, the default one first.
    pub(crate) fn all(&self) -> &[Arc<ServerSlot<B>>] {
        &self.slots
    }

    /// Server `name`, or an error saying which servers there are.
    pub(crate) fn named(&self, name: &str) -> Result<&Arc<ServerSlot<B>>> {
        self.slots.iter().find(|s| s.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.slots.iter().map(|s| s.name.as_str()).collect();
            Error::UnknownServer {
                name: name.to_owned(),
                known: known.join(", "),
            }
        })
    }

    /// Where a new tenant goes: the server `explicit` names (which must accept new tenants),
    /// else the accepting server with the fewest tenants per unit of weight (`counts`: tenants
    /// per server name), the first listed on a tie.
    pub(crate) fn place(
        &self,
        explicit: Option<&str>,
        counts: &HashMap<String, u64>,
    ) -> Result<&Arc<ServerSlot<B>>> {
        if let Some(name) = explicit {
            let slot = self.named(name)?;
            if !slot.accepts_new {
                return Err(Error::config(
                    format!("servers.{name}.accept_new_tenants"),
                    "is false: this server is draining and takes no new tenants; pick another \
                     server or set it to true",
                ));
            }
            return Ok(slot);
        }
        let load = |slot: &ServerSlot<B>| {
            // count / weight, compared exactly as count_a * weight_b vs count_b * weight_a.
            (
                counts.get(&slot.name).copied().unwrap_or(0),
                u64::from(slot.weight),
            )
        };
        self.slots
            .iter()
            .filter(|s| s.accepts_new)
            .min_by(|a, b| {
                let ((ca, wa), (cb, wb)) = (load(a), load(b));
                (u128::from(ca) * u128::from(wb)).cmp(&(u128::from(cb) * u128::from(wa)))
            })
            .ok_or_else(|| {
                Error::config(
                    "servers",
                    "no server accepts new tenants (every one has accept_new_tenants = false); \
                     set it to true on one",
                )
            })
    }
}

/// One server as [`Tenora::server_status`](crate::Tenora::server_status) reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServerStatus {
    /// The server's name (`default`: the base database's server).
    pub name: String,
    /// Whether the config defines it (`false`: only registry rows name it).
    pub configured: bool,
    /// Its share of new tenants.
    pub weight: u32,
    /// Whether new tenants may be placed on it.
    pub accepts_new_tenants: bool,
    /// Registry rows placed on it (any state).
    pub tenants: u64,
    /// Its connection budget; `None`: none (SQLite, or not derived).
    pub max_connections: Option<u32>,
    /// Connections Tenora holds to it now.
    pub open_connections: u64,
    /// Whether it answered a connection just now.
    pub reachable: bool,
    /// Why not, when it did not.
    pub error: Option<String>,
}
