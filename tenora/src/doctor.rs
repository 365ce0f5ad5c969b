//! `check()`: what is wrong with the fleet, read from the registry and the server's catalog.
//!
//! One registry read and one bulk read of each server's catalog (`Server::inventory`), however
//! many tenants there are, plus a lease probe per tenant that is not `active`.

use std::collections::{HashMap, HashSet};
use std::fmt;

use chrono::NaiveDateTime;

use crate::backend::Backend;
use crate::backend::Server as _;
use crate::error::Result;
use crate::ownership;
use crate::registry::TenantState;
use crate::tenant_id::TenantId;
use crate::tenora::Tenora;

/// What [`Tenora::check`] found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Health {
    /// Registry rows read (tenants and malformed rows).
    pub rows: usize,
    /// Everything that is wrong; empty when healthy.
    pub problems: Vec<Problem>,
    /// The warm spares (PostgreSQL, `tenant.spares`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub spares: Vec<crate::spares::Spare>,
}

impl Health {
    /// Whether nothing is wrong.
    pub fn is_healthy(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One thing [`Tenora::check`] found wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// A tenant is being created or dropped, or a crash abandoned that half-way.
    NotActive {
        /// The tenant.
        id: TenantId,
        /// `provisioning` or `deleting`.
        state: TenantState,
        /// When the row last changed (UTC).
        since: NaiveDateTime,
        /// Whether a live process holds its lease (work in progress, not abandoned).
        in_progress: bool,
    },
    /// An `active` tenant's database or user does not exist.
    Missing {
        /// The tenant.
        id: TenantId,
        /// What is missing, e.g. "database `t_acme`".
        object: String,
    },
    /// An `active` tenant's database or user exists without the proof that Tenora made it for
    /// this row (replaced by hand, or another deployment's).
    Unproven {
        /// The tenant.
        id: TenantId,
        /// The object, e.g. "user `user_acme`".
        object: String,
    },
    /// An object carrying a Tenora proof that no row of this registry knows: left over (a row
    /// deleted by hand), or a tenant of another deployment with the same prefixes.
    Orphan {
        /// The object, e.g. "database `t_acme`".
        object: String,
    },
    /// A registry row Tenora cannot read as a tenant.
    Malformed {
        /// The row's id, as stored.
        id: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An `active` tenant's password rotation did not finish: the registry holds both
    /// passwords (the tenant stays reachable).
    RotationUnfinished {
        /// The tenant.
        id: TenantId,
        /// Whether a live process holds its lease (a rotation running now).
        in_progress: bool,
    },
    /// `tenant.template` is on but the template database is missing or built for other
    /// migrations.
    Template {
        /// What is wrong.
        problem: String,
    },
    /// A configured server did not answer: its tenants were not checked.
    Unreachable {
        /// The server's name.
        server: String,
        /// The error.
        error: String,
    },
    /// A warm spare was abandoned by a crash (being made, handed over or removed by no live
    /// process), or was built for other tenant migrations.
    Spare {
        /// The spare's name.
        name: String,
        /// Its server.
        server: String,
        /// What is wrong.
        problem: String,
    },
    /// A registry row names a server that is not configured.
    UnknownServer {
        /// The tenant.
        id: TenantId,
        /// The server its row names.
        server: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NotActive {
                id,
                state,
                since,
                in_progress: true,
            } => write!(
                f,
                "{id}: {state} since {since} (UTC), by a live process: in progress"
            ),
            Problem::NotActive {
                id, state, since, ..
            } => write!(
                f,
                "{id}: {state} since {since} (UTC) and no process holds it: abandoned; run \
                 `tenora tenants repair {id}`"
            ),
            Problem::Missing { id, object } => write!(
                f,
                "{id}: active, but its {object} does not exist; restore it from a backup, or \
                 drop the tenant (`tenora tenants drop {id} --yes`)"
            ),
            Problem::Unproven { id, object } => write!(
                f,
                "{id}: its {object} carries no proof that Tenora made it for this tenant (it \
                 was replaced, or belongs to someone else); Tenora will not drop it"
            ),
            Problem::Orphan { object } => write!(
                f,
                "{object} carries a Tenora proof that no registry row knows: left over from a \
                 row deleted by hand, or another deployment's tenant with the same prefixes"
            ),
            Problem::Malformed { id, problem } => write!(
                f,
                "registry row {id:?}: {problem}; remove it with `tenora tenants drop <id> --yes`"
            ),
            Problem::RotationUnfinished {
                id,
                in_progress: true,
            } => write!(f, "{id}: its password is being rotated by a live process"),
            Problem::RotationUnfinished { id, .. } => write!(
                f,
                "{id}: a password rotation was interrupted (the registry holds both passwords; \
                 the tenant is reachable); finish it with `tenora tenants repair {id}`"
            ),
            Problem::Template { problem } => write!(f, "template: {problem}"),
            Problem::Unreachable { server, error } => write!(
                f,
                "server `{server}` did not answer ({error}); its tenants were not checked"
            ),
            Problem::Spare {
                name,
                server,
                problem,
            } => write!(f, "warm spare `{name}` on server `{server}`: {problem}"),
            Problem::UnknownServer { id, server } => write!(
                f,
                "{id}: its registry row places it on server `{server}`, which is not \
                 configured; add [servers.{server}] to the config (Tenora never guesses where \
                 a tenant's database is)"
            ),
        }
    }
}

impl<B: Backend> Tenora<B> {
    /// Checks the fleet: rows that are not `active` (and whether a live process holds them),
    /// `active` tenants whose database or user is missing or unproven, objects carrying a
    /// Tenora proof that no row knows, malformed rows, and a missing or stale template. Changes
    /// nothing. `tenora doctor` prints it.
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
    /// tenora.create_tenant(&tenora.tenant_id("acme")?, None).await?;
    /// let health = tenora.check().await?;
    /// for problem in &health.problems {
    ///     eprintln!("{problem}"); // each says what to run
    /// }
    /// assert!(health.is_healthy());
    /// # Ok(()) }
    /// # #[cfg(not(feature = "sqlite"))]
    /// # fn main() {}
    /// ```
    pub async fn check(&self) -> Result<Health> {
        let rows = self.registry_rows().await?;
        let count = rows.len();
        let many = self.servers().all().len() > 1;
        let mut problems = Vec::new();
        // One bulk catalog read per server; with several servers, one that does not answer
        // is a problem, not a failure of the whole check.
        let mut inventories = HashMap::new();
        for slot in self.servers().all() {
            match slot.server.inventory().await {
                Ok(inventory) => {
                    inventories.insert(slot.name.clone(), inventory);
                }
                Err(e) if many => problems.push(Problem::Unreachable {
                    server: slot.name.clone(),
                    error: crate::config::redact_url(&e.to_string()),
                }),
                Err(e) => return Err(e),
            }
        }
        let naming = self.naming();
        let mut tokens = HashSet::new();
        // Database and user names of every row, per server, so no row's objects are orphans.
        let mut claimed: HashMap<String, HashSet<String>> = HashMap::new();
        for row in rows {
            let stored = match row.parse() {
                Ok(stored) => stored,
                Err(bad) => {
                    problems.push(Problem::Malformed {
                        id: bad.id,
                        problem: bad.problem,
                    });
                    continue;
                }
            };
            let id = stored.record.id.clone();
            if let Some(token) = &stored.token {
                tokens.insert(token.clone());
            }
            if naming.check(&id).is_err() {
                continue;
            }
            let server = stored.record.server.clone();
            let (database, user) = (naming.database_name(&id), naming.user_name(&id));
            let on_server = claimed.entry(server.clone()).or_default();
            on_server.insert(database.clone());
            on_server.insert(user.clone());
            if stored.record.state != TenantState::Active {
                problems.push(Problem::NotActive {
                    in_progress: self.is_leased(&id).await?,
                    id,
                    state: stored.record.state,
                    since: stored.record.updated_at,
                });
                continue;
            }
            if stored.password.as_deref().map(crate::secret::Sealing::of)
                == Some(crate::secret::Sealing::Rotating)
            {
                problems.push(Problem::RotationUnfinished {
                    in_progress: self.is_leased(&id).await?,
                    id: id.clone(),
                });
            }
            let Ok(slot) = self.server_of(&stored) else {
                problems.push(Problem::UnknownServer { id, server });
                continue;
            };
            // Unreachable: reported once above.
            let Some(inventory) = inventories.get(&server) else {
                continue;
            };
            let label = self.server_label(slot);
            let proof = self.proof_of(&stored);
            let (user_mark, database_mark) = slot.server.expected_marks(&proof);
            let objects = [
                (
                    format!("database `{database}`{label}"),
                    inventory.databases.get(&database),
                    database_mark,
                    true,
                ),
                (
                    format!("user `{user}`{label}"),
                    inventory.users.get(&user),
                    user_mark,
                    self.uses_passwords(),
                ),
            ];
            for (object, found, expected, applies) in objects {
                if !applies {
                    continue;
                }
                match found {
                    None => problems.push(Problem::Missing {
                        id: id.clone(),
                        object,
                    }),
                    // Rows made before proofs are trusted by name; some backends prove only
                    // by presence in bulk.
                    Some(mark) if !proof.legacy && expected.is_some() && *mark != expected => {
                        problems.push(Problem::Unproven {
                            id: id.clone(),
                            object,
                        })
                    }
                    Some(_) => {}
                }
            }
        }
        let mut orphans = Vec::new();
        for slot in self.servers().all() {
            let Some(inventory) = inventories.get(&slot.name) else {
                continue;
            };
            let label = self.server_label(slot);
            let claimed = claimed.remove(&slot.name).unwrap_or_default();
            orphans.extend(
                inventory
                    .databases
                    .iter()
                    .map(|(name, mark)| (format!("database `{name}`{label}"), name, mark))
                    .chain(
                        inventory
                            .users
                            .iter()
                            .map(|(name, mark)| (format!("user `{name}`{label}"), name, mark)),
                    )
                    .filter(|(_, name, _)| !claimed.contains(*name))
                    .filter_map(|(object, _, mark)| {
                        let token = mark.as_deref().and_then(ownership::token_of)?;
                        (!tokens.contains(token)).then_some(object)
                    }),
            );
        }
        orphans.sort();
        problems.extend(orphans.into_iter().map(|object| Problem::Orphan { object }));
        if self.config().tenant.template {
            let wanted = self.tenant_migrations().fingerprint();
            for slot in self.servers().all() {
                if !inventories.contains_key(&slot.name) {
                    continue;
                }
                let on = if many {
                    format!(" (server `{}`)", slot.name)
                } else {
                    String::new()
                };
                match slot.server.template_fingerprint().await? {
                    Some(built) if built == wanted => {}
                    Some(_) => problems.push(Problem::Template {
                        problem: format!(
                            "built for other tenant migrations than this binary's{on}; new \
                             tenants are migrated instead of cloned until `tenora \
                             migrate:tenants` rebuilds it"
                        ),
                    }),
                    None if B::CLIENT == crate::config::Client::Postgres => {
                        problems.push(Problem::Template {
                            problem: format!(
                                "tenant.template is on but the template database does not \
                                 exist{on}; `tenora migrate:tenants` builds it"
                            ),
                        })
                    }
                    None => {}
                }
            }
        }
        let spares = self.spares().await?;
        // Servers whose template is built for this binary's migrations: only there are spares
        // of other migrations outdated (elsewhere they are the other binary's, mid-deploy).
        let mut replaceable = HashSet::new();
        if spares.iter().any(|s| !s.current) {
            let wanted = self.tenant_migrations().fingerprint();
            for slot in self.servers().all() {
                if inventories.contains_key(&slot.name)
                    && slot.server.template_fingerprint().await?.as_deref() == Some(&wanted)
                {
                    replaceable.insert(slot.name.clone());
                }
            }
        }
        for spare in &spares {
            let state = spare.state;
            let fix = "`tenora tenants repair --all` (or `tenora spares fill`) removes it";
            let problem = match state {
                Some(crate::spares::SpareState::Ready)
                    if spare.current || !replaceable.contains(&spare.server) =>
                {
                    continue;
                }
                Some(crate::spares::SpareState::Ready) => {
                    "built for other tenant migrations, so never handed out; `tenora spares \
                     fill` replaces it"
                        .to_owned()
                }
                _ => {
                    let worker = match (state, spare.claimed_by.as_deref()) {
                        (Some(crate::spares::SpareState::Claimed), Some(id)) => id,
                        _ => spare.name.as_str(),
                    };
                    let busy = match TenantId::new(worker) {
                        Ok(id) => self.is_leased(&id).await?,
                        Err(_) => false,
                    };
                    if busy {
                        continue;
                    }
                    let state = state.map_or_else(|| "unknown".to_owned(), |s| s.to_string());
                    format!("`{state}` and no process works on it: abandoned by a crash; {fix}")
                }
            };
            problems.push(Problem::Spare {
                name: spare.name.clone(),
                server: spare.server.clone(),
                problem,
            });
        }
        // Spare objects no spare row knows (of this deployment or another sharing the base
        // database): left over from a row deleted by hand, or from a deployment elsewhere with
        // the same prefixes. Reported, never dropped.
        let every_spare = if inventories.values().any(|i| !i.spares.is_empty()) {
            self.spare_rows_of(None).await?
        } else {
            Vec::new()
        };
        // By name alone: spare names are random, and deployments may name servers apart.
        let known: HashSet<(bool, String)> = every_spare
            .iter()
            .filter_map(|s| TenantId::new(&s.name).ok())
            .flat_map(|id| {
                [
                    (true, naming.user_name(&id)),
                    (false, naming.database_name(&id)),
                ]
            })
            .collect();
        for slot in self.servers().all() {
            let Some(inventory) = inventories.get(&slot.name) else {
                continue;
            };
            let mut unknown: Vec<_> = inventory
                .spares
                .iter()
                .filter(|(key, mark)| {
                    !known.contains(*key) && mark.as_deref().and_then(ownership::token_of).is_some()
                })
                .map(|((is_user, name), _)| (name.clone(), *is_user))
                .collect();
            unknown.sort();
            problems.extend(unknown.into_iter().map(|(name, is_user)| Problem::Spare {
                problem: format!(
                    "its {} carries Tenora's proof, but no warm-spare row knows it: left over \
                     from a row deleted by hand, or a spare of a deployment with the same \
                     prefixes and another base database; Tenora will not drop it (drop it by \
                     hand once sure)",
                    if is_user { "role" } else { "database" }
                ),
                name,
                server: slot.name.clone(),
            }));
        }
        Ok(Health {
            rows: count,
            problems,
            spares,
        })
    }
}
