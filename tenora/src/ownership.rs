//! Proof of ownership: which database objects Tenora made, and for which registry row.
//!
//! Tenant names are derived from the id and the configured prefixes, so another application
//! (or another Tenora deployment with the same prefixes) can own a database or user with the
//! very names a tenant would get. Tenora therefore never acts on a name alone: every object it
//! creates carries proof, written in the same statement that creates it, so a reply lost to a
//! crash cannot leave an unproven object behind:
//!
//! - PostgreSQL: the role's comment is `tenora:<token>` (set in the transaction that creates
//!   the role); the database is created owned by that role.
//! - MariaDB: the database's comment is `tenora:<token>`; the user is created with the
//!   password hash of the registry's password, which nobody else knows.
//! - SQLite: the database file is a hard link of a file whose name carries the token.
//!
//! Drop, repair and the undoing of a failed creation remove only objects whose proof matches
//! the registry row; anything else with the tenant's names is reported and left alone.

use chacha20poly1305::aead::OsRng;
use chacha20poly1305::aead::rand_core::RngCore as _;

use crate::secret::SecretString;

/// A new random token: 128 bits, as 32 lowercase hex digits.
pub(crate) fn new_token() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The text Tenora writes onto an object (a comment) to mark it as made for `token`.
pub(crate) fn mark(token: &str) -> String {
    format!("tenora:{token}")
}

/// What a registry row proves about the objects bearing its tenant's names.
pub struct Proof {
    /// The row's token (`None` for rows made before Tenora wrote proofs).
    pub(crate) token: Option<String>,
    /// The row's password, opened (MariaDB proves its users by their password hash): none
    /// when it cannot be opened, two while a password rotation is in progress (either proves).
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    pub(crate) passwords: Vec<SecretString>,
    /// A row made before proofs existed that got past provisioning (`active` or `deleting`):
    /// its objects were made by that Tenora, so they are trusted by name.
    pub(crate) legacy: bool,
}

impl std::fmt::Debug for Proof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proof")
            .field("token", &self.token)
            .field("legacy", &self.legacy)
            .finish_non_exhaustive()
    }
}

/// Whether an object with a tenant's name exists, and whether it is the tenant's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Nothing has that name.
    Absent,
    /// It exists and carries the registry row's proof.
    Ours,
    /// It exists without the row's proof: someone else's. Never dropped.
    Foreign,
}

impl Presence {
    /// From a catalog check: `None` when nothing has the name, else whether it carries the
    /// proof.
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    pub(crate) fn of(proven: Option<bool>) -> Presence {
        match proven {
            None => Presence::Absent,
            Some(true) => Presence::Ours,
            Some(false) => Presence::Foreign,
        }
    }
}

/// The objects on the server that bear a tenant's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// The tenant's database user or role (`Absent` on backends without users).
    pub user: Presence,
    /// The tenant's database (or file).
    pub database: Presence,
}

impl Found {
    /// Applies the trust of a pre-proof row: what exists is taken as the tenant's.
    pub(crate) fn trusting(self, proof: &Proof) -> Found {
        if !proof.legacy {
            return self;
        }
        let trust = |p: Presence| match p {
            Presence::Foreign => Presence::Ours,
            p => p,
        };
        Found {
            user: trust(self.user),
            database: trust(self.database),
        }
    }
}

/// Every database and user on the server whose name fits the configured naming, each with its
/// mark: what the backend reads as its proof of ownership (compared with
/// `Backend::expected_marks`), `None` when it carries none.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Inventory {
    /// User (role) name → mark.
    pub users: std::collections::HashMap<String, Option<String>>,
    /// Database (or file) name → mark.
    pub databases: std::collections::HashMap<String, Option<String>>,
    /// Warm spares' objects (named for reserved spare ids, see `Naming::reserve_id_prefix`):
    /// (`true` for a user, name) → mark.
    pub spares: std::collections::HashMap<(bool, String), Option<String>>,
}

/// The token a mark written by [`mark`] carries.
pub(crate) fn token_of(mark: &str) -> Option<&str> {
    mark.strip_prefix("tenora:")
}

/// What dropping, repairing or undoing a tenant did on the server.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Removal {
    /// The objects removed, e.g. "database `t_acme`".
    pub removed: Vec<String>,
    /// Objects with the tenant's names that carry no proof of being its own, left in place
    /// (remove them by hand if they are leftovers you recognise).
    pub left_alone: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
        assert_eq!(mark("ab"), "tenora:ab");
    }

    #[test]
    fn legacy_rows_trust_what_exists() {
        let found = Found {
            user: Presence::Foreign,
            database: Presence::Absent,
        };
        let mut proof = Proof {
            token: None,
            passwords: Vec::new(),
            legacy: false,
        };
        assert_eq!(found.trusting(&proof), found);
        proof.legacy = true;
        assert_eq!(found.trusting(&proof).user, Presence::Ours);
        assert_eq!(found.trusting(&proof).database, Presence::Absent);
    }
}
