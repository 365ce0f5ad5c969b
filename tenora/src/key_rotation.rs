//! Key rotation: which key seals each stored password ([`Tenora::key_status`]), and re-sealing
//! every row with the current key ([`Tenora::rotate_key`]).

use std::collections::BTreeMap;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::registry::{MalformedRow, RawRow, RegistryConnection as _};
use crate::secret::{self, KeyRing, Sealing, SecretString};
use crate::tenant_id::TenantId;
use crate::tenora::Tenora;

/// How many stored passwords each key seals: the answer of [`Tenora::key_status`] and
/// `tenora keys status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct KeyStatus {
    /// Registry rows read.
    pub rows: usize,
    /// Every configured key (the current one first) and every key named by a row but not
    /// configured, with the rows each seals.
    pub keys: Vec<KeyUse>,
    /// Rows stored unencrypted (`plain:`).
    pub plaintext: usize,
    /// Rows without a password (SQLite tenants, or tenants that connect as a shared user).
    pub without_password: usize,
    /// Rows whose password no configured key opens, with why (at most the first 20).
    pub unreadable: Vec<(String, String)>,
    /// How many rows are unreadable in all.
    pub unreadable_count: usize,
    /// Warm spares (`tenant.spares`) whose password the current key seals.
    pub spares_current: usize,
    /// Warm spares whose password another configured key seals, or that is stored
    /// unencrypted: [`Tenora::rotate_key`] re-seals them. Removing that key first would leave
    /// them unreadable.
    pub spares_other_key: usize,
    /// Warm spares whose password no configured key opens. Still usable: taking one sets the
    /// tenant's own password instead of adopting the spare's.
    pub spares_unreadable: usize,
}

impl KeyStatus {
    /// Whether every stored password (warm spares' too) is sealed with the current key. An
    /// unreadable spare does not count against it: no rotation can fix it, and it loses
    /// nothing (see [`KeyStatus::spares_unreadable`]).
    pub fn all_current(&self) -> bool {
        self.plaintext == 0
            && self.unreadable_count == 0
            && self.spares_other_key == 0
            && self
                .keys
                .iter()
                .all(|k| k.role == KeyRole::Current || k.rows == 0)
    }
}

/// One key's share of the registry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyUse {
    /// The key's id ([`EncryptionKey::id`](crate::EncryptionKey::id)).
    pub key_id: String,
    /// Whether it is the current key, an old one, or not configured.
    pub role: KeyRole,
    /// Rows it seals.
    pub rows: usize,
    /// Of those, rows in the first envelope version (no key id, found by trying the keys).
    pub v1_rows: usize,
}

/// The place of a key in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    /// `TENORA_KEY` / `secrets.key`: seals new values.
    Current,
    /// In `TENORA_OLD_KEYS` / `secrets.old_keys`: opens what it sealed.
    Old,
    /// Named by stored values, but not configured: those rows cannot be opened.
    Unknown,
}

/// What [`Tenora::rotate_key`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct KeyRotation {
    /// The id of the current key, which now seals every stored password.
    pub key_id: String,
    /// Registry rows read.
    pub rows: usize,
    /// Rows moved from an old key (or the first envelope version) to the current key.
    pub resealed: usize,
    /// Rows stored unencrypted that are now sealed.
    pub sealed_plaintext: usize,
    /// Rows already sealed with the current key (e.g. done by an earlier, interrupted run).
    pub already_current: usize,
    /// Rows without a password.
    pub without_password: usize,
    /// Rows that another process changed or deleted while this run worked on them, and that
    /// it left as that process wrote them (run again to cover them if they need it).
    pub changed_meanwhile: usize,
    /// Rows whose id is not a valid tenant id: skipped (`tenora doctor` lists them).
    pub malformed: Vec<MalformedRow>,
    /// Warm spares whose password moved to the current key.
    pub spares_resealed: usize,
    /// Warm spares whose password no configured key opens: left as they are (taking one
    /// sets the tenant's own password instead of adopting the spare's).
    pub spares_unreadable: usize,
}

/// A row the rotation re-seals: its id, the stored value it read, and that value opened (two
/// passwords while a password rotation is in progress).
struct Work {
    id: TenantId,
    stored: String,
    passwords: Vec<SecretString>,
    plaintext: bool,
}

/// How many unreadable rows a status or an error names.
const NAMED: usize = 20;

impl<B: Backend> Tenora<B> {
    /// Counts, from the registry, how many stored passwords each key seals, how many are stored
    /// unencrypted, and which ones no configured key opens (each row is opened to check); the
    /// same for the warm spares' passwords. Reads only; `tenora keys status` prints it.
    pub async fn key_status(&self) -> Result<KeyStatus> {
        let keys = self.keys();
        let rows = self.registry_rows().await?;
        let mut status = KeyStatus {
            rows: rows.len(),
            keys: keys
                .keys()
                .enumerate()
                .map(|(i, key)| KeyUse {
                    key_id: key.id(),
                    role: if i == 0 && keys.current().is_some() {
                        KeyRole::Current
                    } else {
                        KeyRole::Old
                    },
                    rows: 0,
                    v1_rows: 0,
                })
                .collect(),
            ..KeyStatus::default()
        };
        let mut unknown: BTreeMap<String, usize> = BTreeMap::new();
        for row in rows {
            let Some(stored) = row.password.as_deref() else {
                status.without_password += 1;
                continue;
            };
            let sealing = Sealing::of(stored);
            if sealing == Sealing::Plain {
                status.plaintext += 1;
                continue;
            }
            let mut unreadable = |reason: String| {
                status.unreadable_count += 1;
                if status.unreadable.len() < NAMED {
                    status.unreadable.push((row.id.clone(), reason));
                }
            };
            let id = match TenantId::new(&row.id) {
                Ok(id) => id,
                Err(e) => {
                    unreadable(format!("its id is not a valid tenant id ({e})"));
                    continue;
                }
            };
            // A password rotation in progress counts under the key of its value that is not
            // sealed with the current key, if one is (removing that key would lose it).
            let stored = match secret::split_rotating(stored) {
                Some((new, old)) => {
                    let current = keys.current().map(|k| k.id());
                    let on_current = |v: &str| {
                        current
                            .as_deref()
                            .is_some_and(|c| secret::sealed_with(v, c))
                    };
                    if on_current(new) { old } else { new }
                }
                None => stored,
            };
            if Sealing::of(stored) == Sealing::Plain {
                status.plaintext += 1;
                continue;
            }
            match keys.open_with(&id, stored) {
                Ok((_, key)) => {
                    let key_id = key.id();
                    let used = status
                        .keys
                        .iter_mut()
                        .find(|k| k.key_id == key_id)
                        .expect("the key that opened it is configured");
                    used.rows += 1;
                    used.v1_rows += usize::from(Sealing::of(stored) == Sealing::V1);
                }
                Err(secret::SecretError::UnknownKey { key_id, .. }) => {
                    *unknown.entry(key_id).or_default() += 1;
                }
                Err(e) => unreadable(e.to_string()),
            }
        }
        status
            .keys
            .extend(unknown.into_iter().map(|(key_id, rows)| KeyUse {
                key_id,
                role: KeyRole::Unknown,
                rows,
                v1_rows: 0,
            }));
        (
            status.spares_current,
            status.spares_other_key,
            status.spares_unreadable,
        ) = self.spare_key_counts().await?;
        Ok(status)
    }

    /// Re-seals every stored password with the current key: rows sealed by an old key (or in
    /// the first envelope version) and rows stored unencrypted. First every row is opened; if
    /// any cannot be, nothing is changed ([`Error::UnreadablePasswords`] names them). Then row
    /// by row, each write a compare-and-swap on the value read, so a password another process
    /// changes meanwhile is never overwritten. Every row stays readable with the configured
    /// keys at every moment, so an interrupted run is simply run again: rows already sealed
    /// with the current key are skipped. The warm spares' passwords (`tenant.spares`) are
    /// re-sealed the same way; a spare no key opens is reported, not fatal. `tenora keys
    /// rotate` runs it.
    ///
    /// Rotating means: make the new key current (`TENORA_KEY`), list the old one in
    /// `TENORA_OLD_KEYS` (on every process, before or with the switch), run this, then remove
    /// the old key.
    pub async fn rotate_key(&self) -> Result<KeyRotation> {
        let keys = self.keys();
        let Some(current) = keys.current() else {
            return Err(Error::config(
                "secrets.key / TENORA_KEY",
                "a key rotation seals every row with the current key: set it (and list the \
                 previous keys in TENORA_OLD_KEYS)",
            ));
        };
        let rows = self.registry_rows().await?;
        let mut report = KeyRotation {
            key_id: current.id(),
            rows: rows.len(),
            ..KeyRotation::default()
        };
        let current_id = current.id();
        let (work, unreadable) = plan(keys, &current_id, rows, &mut report);
        if let Some((_, first)) = unreadable.first() {
            let mut tenants: Vec<&str> = unreadable
                .iter()
                .take(NAMED)
                .map(|(id, _)| id.as_str())
                .collect();
            if unreadable.len() > NAMED {
                tenants.push("…");
            }
            return Err(Error::UnreadablePasswords {
                count: unreadable.len(),
                tenants: tenants.join(", "),
                first: first.clone(),
            });
        }
        let mut conn = self.base_conn().await?;
        for row in work {
            self.reseal(&mut conn, keys, row, &mut report).await?;
            crate::failpoint::reached("key_rotation_row");
        }
        drop(conn);
        // The warm spares' passwords too: a spare sealed with a key later removed could not
        // hand its password over.
        (report.spares_resealed, report.spares_unreadable) = self.reseal_spares().await?;
        tracing::info!(
            key = %report.key_id,
            resealed = report.resealed,
            sealed_plaintext = report.sealed_plaintext,
            already_current = report.already_current,
            changed_meanwhile = report.changed_meanwhile,
            "key rotation finished"
        );
        Ok(report)
    }

    /// Writes one row sealed with the current key, if it still holds what was read; when it
    /// changed meanwhile, reads it again and retries a few times.
    async fn reseal(
        &self,
        conn: &mut crate::pool::PooledConn<B>,
        keys: &KeyRing,
        mut row: Work,
        report: &mut KeyRotation,
    ) -> Result<()> {
        let current = keys.current().expect("checked by rotate_key");
        for _ in 0..3 {
            let sealed = secret::seal_all(current, &row.id, &row.passwords);
            let swapped = conn
                .registry_swap_password(self.table(), &row.id, &row.stored, &sealed)
                .await
                .map_err(|e| self.registry_error(e, &row.id))?;
            if swapped == 1 {
                if row.plaintext {
                    report.sealed_plaintext += 1;
                } else {
                    report.resealed += 1;
                }
                return Ok(());
            }
            // Changed (a password rotation, another key rotation) or deleted since it was read.
            let again = conn
                .registry_get(self.table(), &row.id)
                .await
                .map_err(|e| self.registry_error(e, &row.id))?;
            let Some(stored) = again.and_then(|r| r.password) else {
                break;
            };
            if secret::sealed_with(&stored, &current.id()) {
                break;
            }
            row.plaintext = Sealing::of(&stored) == Sealing::Plain;
            row.passwords = secret::open_any(keys, &row.id, &stored)?;
            row.stored = stored;
        }
        report.changed_meanwhile += 1;
        Ok(())
    }
}

/// Sorts the rows: what needs re-sealing (opened), what cannot be opened, and the rest counted
/// into `report`.
fn plan(
    keys: &KeyRing,
    current_id: &str,
    rows: Vec<RawRow>,
    report: &mut KeyRotation,
) -> (Vec<Work>, Vec<(String, secret::SecretError)>) {
    let (mut work, mut unreadable) = (Vec::new(), Vec::new());
    for row in rows {
        let Some(stored) = row.password.clone() else {
            report.without_password += 1;
            continue;
        };
        let sealing = Sealing::of(&stored);
        if secret::sealed_with(&stored, current_id) {
            report.already_current += 1;
            continue;
        }
        let id = match row.parse() {
            Ok(parsed) => parsed.record.id,
            Err(bad) => {
                report.malformed.push(bad);
                continue;
            }
        };
        match secret::open_any(keys, &id, &stored) {
            Ok(passwords) => work.push(Work {
                id,
                stored,
                passwords,
                plaintext: sealing == Sealing::Plain,
            }),
            Err(e) => unreadable.push((id.to_string(), e)),
        }
    }
    (work, unreadable)
}
