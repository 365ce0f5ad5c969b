//! How big the connection budget is and how it splits: read from the config when
//! `pool_cache.max_connections` is set, otherwise derived from the server's own limit.
//!
//! The budget is cut into slices so that administrative work never waits behind busy tenant
//! pools:
//!
//! | slice | size | used by |
//! | --- | --- | --- |
//! | administrative sessions | the backend's (PostgreSQL 2, MySQL 1, SQLite 0) | CREATE/DROP DATABASE, roles |
//! | base pool | `base.pool.max_size` | registry lookups and writes |
//! | work | [`WORK_CONNECTIONS`] | migrations, provisioning, template builds (they may also borrow from the pools' slice) |
//! | tenant pools | the rest (at least 1) | `tenant_conn`, the first connection of each pool |

use std::fmt;

use crate::config::Config;
use crate::error::{Error, Result};

/// Connections kept for migrations and provisioning, so a sign-up or a migration can always
/// make progress while every tenant connection is busy.
pub const WORK_CONNECTIONS: u32 = 1;

/// The share of the free connection slots a derived budget takes, as a fraction
/// (numerator, denominator): three quarters, leaving a quarter to other clients — a `psql`
/// session, a backup, a `tenora migrate:tenants` run next to the app.
pub const DERIVED_SHARE: (u32, u32) = (3, 4);

/// What the server said about its connection limit when Tenora connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerLimits {
    /// The server's `max_connections`.
    pub max_connections: u32,
    /// Slots ordinary roles cannot use (PostgreSQL: `superuser_reserved_connections` plus
    /// `reserved_connections` on 16+; MySQL: 0).
    pub reserved: u32,
    /// Client connections other than Tenora's own that were open at that moment.
    pub in_use_by_others: u32,
    /// The connecting account's own limit (MySQL `max_user_connections`), when it has one.
    pub account_limit: Option<u32>,
}

impl ServerLimits {
    /// Slots free for Tenora when it connected.
    pub fn free(&self) -> u32 {
        self.max_connections
            .saturating_sub(self.reserved)
            .saturating_sub(self.in_use_by_others)
    }
}

/// Where the budget's size came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BudgetSource {
    /// No budget: SQLite (no server limit) without `pool_cache.max_connections`.
    #[default]
    Unlimited,
    /// `pool_cache.max_connections`.
    Configured,
    /// Derived from the server's limit at connect.
    Derived,
}

/// The connection budget of a [`Tenora`](crate::Tenora): its size, where that came from and how
/// it is split. `Display` explains it in one sentence (that is what Tenora logs at start).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BudgetPlan {
    /// Server connections Tenora may hold at once, all slices together (`None`: no limit).
    pub max_connections: Option<u32>,
    /// Where `max_connections` came from.
    pub source: BudgetSource,
    /// What the server reported, for a derived budget.
    pub server: Option<ServerLimits>,
    /// `pool_cache.replicas`: processes sharing the server's free slots.
    pub replicas: u32,
    /// Kept for the backend's administrative sessions.
    pub admin: u32,
    /// Kept for the base pool (`base.pool.max_size`).
    pub base: u32,
    /// Kept for migrations and provisioning.
    pub work: u32,
    /// Left for tenant pools (`None`: no limit).
    pub pools: Option<u32>,
    /// The derived size was below the smallest workable budget and was raised to it.
    pub raised_to_minimum: bool,
}

impl BudgetPlan {
    /// The smallest budget that fits the administrative sessions, the base pool, the work slice
    /// and one tenant connection.
    pub fn minimum(admin: u32, base: u32) -> u32 {
        admin + base + WORK_CONNECTIONS + 1
    }

    /// The plan for `config` on a backend with `admin` administrative sessions, given what the
    /// server reported (`None` for SQLite, which has no server limit).
    pub(crate) fn new(config: &Config, admin: u32, server: Option<ServerLimits>) -> Result<Self> {
        let base = config.base.pool.max_size;
        let least = Self::minimum(admin, base);
        let replicas = config.pool_cache.replicas.max(1);
        let mut raised_to_minimum = false;
        let (max, source) = match (config.pool_cache.max_connections, server) {
            (Some(max), _) => {
                if max < least {
                    return Err(Error::config(
                        "pool_cache.max_connections",
                        format!(
                            "must be at least {least} on {}: {admin} administrative session(s), \
                             the base pool ({base}, base.pool.max_size), {WORK_CONNECTIONS} for \
                             migrations and one tenant connection; raise it or lower \
                             base.pool.max_size",
                            config.base.client.as_str()
                        ),
                    ));
                }
                (Some(max), BudgetSource::Configured)
            }
            (None, Some(limits)) => {
                let (num, den) = DERIVED_SHARE;
                let mut derived = limits.free() * num / den / replicas;
                if let Some(account) = limits.account_limit {
                    derived = derived.min(account);
                }
                if derived < least {
                    raised_to_minimum = true;
                    derived = least;
                }
                (Some(derived), BudgetSource::Derived)
            }
            (None, None) => (None, BudgetSource::Unlimited),
        };
        Ok(BudgetPlan {
            max_connections: max,
            source,
            server: if source == BudgetSource::Derived {
                server
            } else {
                None
            },
            replicas,
            admin,
            base,
            work: WORK_CONNECTIONS,
            pools: max.map(|m| m - admin - base - WORK_CONNECTIONS),
            raised_to_minimum,
        })
    }
}

impl fmt::Display for BudgetPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(max) = self.max_connections else {
            return f.write_str(
                "no connection budget (SQLite has no server connection limit; set \
                 pool_cache.max_connections to have one)",
            );
        };
        write!(f, "connection budget {max} ")?;
        match (self.source, self.server) {
            (BudgetSource::Derived, Some(s)) => {
                let (num, den) = DERIVED_SHARE;
                write!(
                    f,
                    "(derived: the server allows {} connections, {} reserved, {} held by other \
                     clients, so {} free; {num}/{den} of that",
                    s.max_connections,
                    s.reserved,
                    s.in_use_by_others,
                    s.free()
                )?;
                if self.replicas > 1 {
                    write!(f, " divided by {} replicas", self.replicas)?;
                }
                if let Some(account) = s.account_limit {
                    write!(f, ", at most the account's limit of {account}")?;
                }
                if self.raised_to_minimum {
                    write!(
                        f,
                        ", raised to the minimum Tenora needs — the server is nearly full"
                    )?;
                }
                f.write_str(")")?;
            }
            _ => f.write_str("(pool_cache.max_connections)")?,
        }
        write!(
            f,
            ": {} for administrative sessions, {} for the base pool, {} for migrations, {} for \
             tenant pools",
            self.admin,
            self.base,
            self.work,
            self.pools.unwrap_or(0)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: u32, reserved: u32, others: u32) -> ServerLimits {
        ServerLimits {
            max_connections: max,
            reserved,
            in_use_by_others: others,
            account_limit: None,
        }
    }

    fn pg() -> Config {
        Config::postgres("postgres://admin@127.0.0.1/app")
    }

    #[test]
    fn derived_budget_takes_three_quarters_of_the_free_slots() {
        // 40 − 3 reserved − 1 other = 36 free → 27.
        let plan = BudgetPlan::new(&pg(), 2, Some(limits(40, 3, 1))).unwrap();
        assert_eq!(plan.max_connections, Some(27));
        assert_eq!(plan.source, BudgetSource::Derived);
        assert_eq!(plan.pools, Some(27 - 2 - 4 - WORK_CONNECTIONS));
        let text = plan.to_string();
        assert!(
            text.contains("allows 40") && text.contains("36 free"),
            "{text}"
        );
    }

    #[test]
    fn replicas_divide_and_account_limits_cap() {
        let mut config = pg();
        config.pool_cache.replicas = 3;
        let plan = BudgetPlan::new(&config, 2, Some(limits(100, 3, 1))).unwrap();
        assert_eq!(plan.max_connections, Some(96 * 3 / 4 / 3));
        let capped = ServerLimits {
            account_limit: Some(12),
            ..limits(100, 0, 0)
        };
        let plan = BudgetPlan::new(&pg(), 1, Some(capped)).unwrap();
        assert_eq!(plan.max_connections, Some(12));
    }

    #[test]
    fn a_full_server_gets_the_minimum_and_says_so() {
        let plan = BudgetPlan::new(&pg(), 2, Some(limits(20, 3, 15))).unwrap();
        assert_eq!(plan.max_connections, Some(BudgetPlan::minimum(2, 4)));
        assert!(plan.raised_to_minimum);
        assert!(plan.to_string().contains("nearly full"));
    }

    #[test]
    fn explicit_budget_wins_and_too_small_is_refused() {
        let mut config = pg();
        config.pool_cache.max_connections = Some(50);
        let plan = BudgetPlan::new(&config, 2, Some(limits(40, 3, 0))).unwrap();
        assert_eq!(
            (plan.max_connections, plan.source),
            (Some(50), BudgetSource::Configured)
        );
        config.pool_cache.max_connections = Some(7);
        let err = BudgetPlan::new(&config, 2, None).unwrap_err().to_string();
        assert!(
            err.contains("pool_cache.max_connections") && err.contains("at least 8"),
            "{err}"
        );
    }

    #[test]
    fn without_a_server_limit_there_is_no_budget() {
        let plan = BudgetPlan::new(&Config::sqlite("base.sqlite"), 0, None).unwrap();
        assert_eq!(plan.max_connections, None);
        assert_eq!(plan.source, BudgetSource::Unlimited);
    }
}
