//! Where a tenant is in its life ([`TenantState`], stored in the registry) and the steps
//! that move it there ([`Step`], named in errors and failpoints). A leaf module: errors,
//! the registry and provisioning all name these without depending on each other.

use std::fmt;

/// Where a tenant is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantState {
    /// Being created: the database may be half-made. Not served by `tenant_conn`.
    Provisioning,
    /// Ready to serve.
    Active,
    /// Being dropped. Not served by `tenant_conn`.
    Deleting,
}

impl TenantState {
    /// The text stored in the `state` column.
    pub fn as_str(self) -> &'static str {
        match self {
            TenantState::Provisioning => "provisioning",
            TenantState::Active => "active",
            TenantState::Deleting => "deleting",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "provisioning" => Some(TenantState::Provisioning),
            "active" => Some(TenantState::Active),
            "deleting" => Some(TenantState::Deleting),
            _ => None,
        }
    }
}

impl fmt::Display for TenantState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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

impl Step {
    /// The step's name in snake case, e.g. `create_database` (also the name of its failpoint).
    pub fn key(self) -> &'static str {
        match self {
            Step::Register => "register",
            Step::CreateUser => "create_user",
            Step::CreateDatabase => "create_database",
            Step::LockDown => "lock_down",
            Step::Migrate => "migrate",
            Step::Seed => "seed",
            Step::Activate => "activate",
            Step::MarkDeleting => "mark_deleting",
            Step::DropDatabase => "drop_database",
            Step::DropUser => "drop_user",
            Step::Unregister => "unregister",
        }
    }
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
