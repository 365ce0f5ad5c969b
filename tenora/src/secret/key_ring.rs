//! [`KeyRing`]: the current encryption key and the old ones still accepted for reading.

use std::fmt;

use super::{EncryptionKey, Envelope, SecretError, SecretString};
use crate::tenant_id::TenantId;

/// The keys Tenora opens stored passwords with: the current key, which seals every new value,
/// and old keys, which only open what they sealed (while a key rotation moves those values to
/// the current key). Configured by `TENORA_KEY` / `secrets.key` and `TENORA_OLD_KEYS` /
/// `secrets.old_keys`.
///
/// ```
/// use tenora::secret::{KeyRing, encrypt_password};
/// use tenora::{EncryptionKey, TenantId};
///
/// let (old, new) = (EncryptionKey::generate(), EncryptionKey::generate());
/// let acme = TenantId::new("acme")?;
/// let stored = encrypt_password(&old, &acme, "s3cret-password");
/// let ring = KeyRing::new(Some(new), vec![old]);
/// assert_eq!(ring.open(&acme, &stored)?.expose(), "s3cret-password");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct KeyRing {
    current: Option<EncryptionKey>,
    old: Vec<EncryptionKey>,
}

impl KeyRing {
    /// A ring of `current` (which seals) and `old` keys (which only open). An old key equal to
    /// the current one, or listed twice, is kept once.
    pub fn new(
        current: Option<EncryptionKey>,
        old: impl IntoIterator<Item = EncryptionKey>,
    ) -> Self {
        let mut ring = KeyRing {
            current,
            old: Vec::new(),
        };
        for key in old {
            if ring.by_id(&key.id()).is_none() {
                ring.old.push(key);
            }
        }
        ring
    }

    /// The key new values are sealed with.
    pub fn current(&self) -> Option<&EncryptionKey> {
        self.current.as_ref()
    }

    /// The keys accepted for reading only.
    pub fn old(&self) -> &[EncryptionKey] {
        &self.old
    }

    /// Whether no key at all is configured.
    pub fn is_empty(&self) -> bool {
        self.current.is_none() && self.old.is_empty()
    }

    /// Every key, the current one first.
    pub fn keys(&self) -> impl Iterator<Item = &EncryptionKey> {
        self.current.iter().chain(&self.old)
    }

    /// The configured key with this [id](EncryptionKey::id).
    pub fn by_id(&self, key_id: &str) -> Option<&EncryptionKey> {
        self.keys().find(|key| key.id() == key_id)
    }

    /// Opens an envelope sealed for `tenant` by any key of the ring: a `tenora:v2:` envelope
    /// with the key it names ([`SecretError::UnknownKey`] when that key is not configured), a
    /// `tenora:v1:` one with each key in turn.
    pub fn open(&self, tenant: &TenantId, envelope: &str) -> Result<SecretString, SecretError> {
        self.open_with(tenant, envelope)
            .map(|(password, _)| password)
    }

    /// Like [`KeyRing::open`], also saying which key opened it.
    pub fn open_with(
        &self,
        tenant: &TenantId,
        envelope: &str,
    ) -> Result<(SecretString, &EncryptionKey), SecretError> {
        let parsed = Envelope::parse(tenant, envelope)?;
        match parsed.key_id {
            Some(key_id) => {
                let key = self.by_id(key_id).ok_or_else(|| SecretError::UnknownKey {
                    tenant: tenant.clone(),
                    key_id: key_id.to_owned(),
                })?;
                Ok((parsed.open(key, tenant)?, key))
            }
            None => self
                .keys()
                .find_map(|key| parsed.open(key, tenant).ok().map(|p| (p, key)))
                .ok_or_else(|| SecretError::Decrypt(tenant.clone())),
        }
    }
}

impl fmt::Debug for KeyRing {
    /// Key ids only (they are not secret).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.current.as_ref().map(EncryptionKey::id))
            .field(
                "old",
                &self.old.iter().map(EncryptionKey::id).collect::<Vec<_>>(),
            )
            .finish()
    }
}
