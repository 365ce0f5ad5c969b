//! Secrets: generated tenant passwords, and their encryption at rest.
//!
//! Tenant passwords are stored in the registry as a versioned text envelope
//!
//! ```text
//! tenora:v2:<key id>:<nonce>:<ciphertext>   (nonce and ciphertext base64url, no padding)
//! ```
//!
//! sealed with ChaCha20-Poly1305 under a 32-byte [`EncryptionKey`], with a fresh random nonce per
//! encryption and the envelope's header and the tenant id as associated data: a ciphertext
//! copied into another tenant's row does not decrypt, and a wrong key is an error, never
//! garbage. The key id ([`EncryptionKey::id`]) names the key that sealed the value, so a
//! [`KeyRing`] of the current key and old ones opens every row while keys are rotated.
//! Envelopes of the first version, `tenora:v1:<nonce>:<ciphertext>` (no key id), stay readable:
//! each configured key is tried. Without a key, passwords are stored as `plain:<password>` and
//! Tenora warns.
//!
//! Secret values are zeroized on drop and never shown by `Debug` or in error messages.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::{AeadCore, ChaCha20Poly1305, Key, Nonce};
use rand::Rng;
use zeroize::{Zeroize, Zeroizing};

use crate::tenant_id::TenantId;

mod key_ring;

pub use key_ring::KeyRing;

const ENVELOPE_V1: &str = "tenora:v1:";
const ENVELOPE_V2: &str = "tenora:v2:";
/// A password rotation in progress: `tenora:rotating:<new value> <old value>`, each value as it
/// is stored otherwise. Written before the server's password changes, so the tenant stays
/// reachable (with one or the other) whatever happens next.
const ROTATING: &str = "tenora:rotating:";
/// Characters of a key id: 6 bytes of a SHA-256 of the key, as base64url.
const KEY_ID_LEN: usize = 8;
const PLAIN_PREFIX: &str = "plain:";
const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Length of generated passwords: 32 characters of 62 kinds, about 190 bits of entropy.
pub const GENERATED_PASSWORD_LEN: usize = 32;

/// Why a secret could not be used. Never contains the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The encryption key is not 32 bytes of base64 or hex.
    #[error(
        "invalid encryption key: {0}; TENORA_KEY must be 32 random bytes as base64 (44 \
         characters) or hex (64 characters), e.g. from `openssl rand -base64 32`"
    )]
    InvalidKey(String),
    /// Decryption failed: wrong key, or a value taken from another tenant's row.
    #[error(
        "cannot decrypt the stored password of tenant `{0}`: the encryption key is wrong \
         (check TENORA_KEY and TENORA_OLD_KEYS) or the value was copied from another tenant's row"
    )]
    Decrypt(TenantId),
    /// The stored password is sealed with a key that is not configured.
    #[error(
        "the stored password of tenant `{tenant}` is sealed with key `{key_id}`, which is not \
         configured: add that key to TENORA_OLD_KEYS (or secrets.old_keys), or make it the \
         current key (TENORA_KEY)"
    )]
    UnknownKey {
        /// The tenant.
        tenant: TenantId,
        /// The id of the key named in the envelope ([`EncryptionKey::id`]).
        key_id: String,
    },
    /// The stored value is not a Tenora envelope.
    #[error("the stored password of tenant `{tenant}` is malformed: {reason}")]
    Malformed {
        /// The tenant.
        tenant: TenantId,
        /// What is wrong with the envelope.
        reason: String,
    },
    /// The stored password is encrypted but no key is configured.
    #[error(
        "the stored password of tenant `{0}` is encrypted but no encryption key is configured; \
         set TENORA_KEY (or secrets.key) to the key it was stored with"
    )]
    MissingKey(TenantId),
    /// A tenant password would be stored unencrypted, and the config does not allow it.
    #[error(
        "no encryption key is configured, so the password of tenant `{0}` would be stored in \
         plain text: set TENORA_KEY (or secrets.key; make one with `tenora generate-key`), or \
         set `[secrets] allow_plaintext = true` to store passwords unencrypted on purpose"
    )]
    PlaintextRefused(TenantId),
    /// A password stored unencrypted was found although a key is configured.
    #[error(
        "the stored password of tenant `{0}` is not encrypted although an encryption key is \
         configured; refused (an unencrypted value in the registry could be a downgrade). To \
         read rows stored before the key was set, set `[secrets] allow_plaintext = true` until \
         they are sealed again"
    )]
    PlaintextWithKey(TenantId),
    /// A caller-supplied password broke the password rule.
    #[error(
        "unusable password: {0}; a tenant password is 8 to 128 printable ASCII characters \
         without spaces, quotes or backslashes"
    )]
    BadPassword(String),
}

/// A string that holds a secret (password, key, URL with credentials).
///
/// Zeroized on drop; `Debug` prints `<redacted>`. Read it with [`SecretString::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(Box<str>);

impl SecretString {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        SecretString(secret.into().into_boxed_str())
    }

    /// The secret itself. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for SecretString {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        SecretString::new(s)
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        SecretString::new(s)
    }
}

impl<'de> serde::Deserialize<'de> for SecretString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretString::new)
    }
}

/// A 32-byte ChaCha20-Poly1305 key for tenant passwords.
///
/// Text form (for `TENORA_KEY` or `secrets.key`): base64 (standard or URL-safe, padding
/// optional; 43–44 characters) or 64 hex digits. Create one with [`EncryptionKey::generate`]
/// and [`EncryptionKey::to_base64`], or `openssl rand -base64 32`.
#[derive(Clone)]
pub struct EncryptionKey(Zeroizing<[u8; 32]>);

impl EncryptionKey {
    /// A new random key from the OS random number generator.
    pub fn generate() -> Self {
        let key = ChaCha20Poly1305::generate_key(&mut OsRng);
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(&key);
        EncryptionKey(bytes)
    }

    /// Parses the text form (base64 or hex of 32 bytes).
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        let decoded = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            decode_hex(text)
        } else {
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(text).ok())
                .map(Zeroizing::new)
        };
        let Some(decoded) = decoded else {
            return Err(SecretError::InvalidKey(
                "it is neither base64 nor hex".to_owned(),
            ));
        };
        if decoded.len() != 32 {
            return Err(SecretError::InvalidKey(format!(
                "it decodes to {} bytes, not 32",
                decoded.len()
            )));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(&decoded);
        Ok(EncryptionKey(bytes))
    }

    /// The key as standard base64, the form `TENORA_KEY` takes. Treat the result as a secret.
    pub fn to_base64(&self) -> SecretString {
        SecretString::new(STANDARD.encode(*self.0))
    }

    /// The key's id: 8 characters (base64url of 6 bytes of a SHA-256 of the key), written into
    /// every envelope the key seals so readers know which key opens it. Not secret, safe to
    /// show; it reveals nothing usable about the key.
    ///
    /// ```
    /// let key = tenora::EncryptionKey::generate();
    /// assert_eq!(key.id().len(), 8);
    /// assert_eq!(key.id(), tenora::EncryptionKey::parse(key.to_base64().expose())?.id());
    /// # Ok::<(), tenora::secret::SecretError>(())
    /// ```
    pub fn id(&self) -> String {
        use sha2::Digest as _;
        let digest = sha2::Sha256::new()
            .chain_update(b"tenora key id\0")
            .chain_update(*self.0)
            .finalize();
        let id = URL_SAFE_NO_PAD.encode(&digest[..6]);
        debug_assert_eq!(id.len(), KEY_ID_LEN);
        id
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&*self.0))
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey(<redacted>)")
    }
}

fn decode_hex(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let bytes = text.as_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(bytes.len() / 2));
    for pair in bytes.chunks(2) {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out.push(u8::try_from(hi * 16 + lo).ok()?);
    }
    Some(out)
}

/// A new random password: [`GENERATED_PASSWORD_LEN`] characters from `A-Z a-z 0-9` drawn from
/// the OS random number generator (about 190 bits), safe in URLs and SQL without escaping.
///
/// ```
/// let password = tenora::secret::generate_password();
/// assert_eq!(password.expose().len(), 32);
/// assert_eq!(format!("{password:?}"), "<redacted>"); // never the password
/// ```
pub fn generate_password() -> SecretString {
    let mut rng = OsRng;
    let password: String = (0..GENERATED_PASSWORD_LEN)
        .map(|_| char::from(PASSWORD_ALPHABET[rng.gen_range(0..PASSWORD_ALPHABET.len())]))
        .collect();
    SecretString::new(password)
}

/// Checks a caller-supplied tenant password against the password rule.
pub fn check_password(password: &str) -> Result<(), SecretError> {
    let len = password.chars().count();
    if !(8..=128).contains(&len) {
        return Err(SecretError::BadPassword(format!(
            "it is {len} characters long"
        )));
    }
    if let Some(c) = password
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '\'' | '"' | '\\' | '`'))
    {
        let shown = if c.is_ascii_graphic() {
            format!("{c:?}")
        } else {
            "a space, control or non-ASCII character".to_owned()
        };
        return Err(SecretError::BadPassword(format!("it contains {shown}")));
    }
    Ok(())
}

/// How a stored registry value is sealed, read from its header alone (nothing is decrypted).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Sealing {
    /// `plain:`: stored unencrypted.
    Plain,
    /// A `tenora:v1:` envelope: sealed by an unnamed key.
    V1,
    /// A `tenora:v2:` envelope sealed by the key with this id.
    Key(String),
    /// A password rotation in progress (two values, the new and the old).
    Rotating,
    /// Not a Tenora value.
    Malformed,
}

impl Sealing {
    /// Reads the header of a stored value.
    pub fn of(stored: &str) -> Sealing {
        if stored.starts_with(ROTATING) {
            Sealing::Rotating
        } else if stored.starts_with(PLAIN_PREFIX) {
            Sealing::Plain
        } else if stored.starts_with(ENVELOPE_V1) {
            Sealing::V1
        } else if let Some((key_id, _)) = stored
            .strip_prefix(ENVELOPE_V2)
            .and_then(|rest| rest.split_once(':'))
        {
            Sealing::Key(key_id.to_owned())
        } else {
            Sealing::Malformed
        }
    }
}

/// The associated data of an envelope: its header (version and key id) and the tenant.
fn associated_data(header: &str, tenant: &TenantId) -> Vec<u8> {
    [header.as_bytes(), tenant.as_str().as_bytes()].concat()
}

/// Seals `password` for `tenant` under `key` into a `tenora:v2:` envelope naming the key.
pub fn encrypt_password(key: &EncryptionKey, tenant: &TenantId, password: &str) -> String {
    seal_under(
        key,
        &format!("{ENVELOPE_V2}{}:", key.id()),
        tenant,
        password,
    )
}

/// An envelope `<header><nonce>:<ciphertext>`, the header and tenant authenticated with it.
fn seal_under(key: &EncryptionKey, header: &str, tenant: &TenantId, password: &str) -> String {
    let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
    let aad = associated_data(header, tenant);
    let ciphertext = key
        .cipher()
        .encrypt(
            &nonce,
            Payload {
                msg: password.as_bytes(),
                aad: &aad,
            },
        )
        .expect("ChaCha20-Poly1305 encryption of a short message cannot fail");
    format!(
        "{header}{}:{}",
        URL_SAFE_NO_PAD.encode(nonce),
        URL_SAFE_NO_PAD.encode(ciphertext)
    )
}

/// Opens an envelope made by [`encrypt_password`] (or a `tenora:v1:` one) for the same tenant
/// and key. A `tenora:v2:` envelope of another key fails with [`SecretError::UnknownKey`]; use
/// a [`KeyRing`] to open values of several keys.
pub fn decrypt_password(
    key: &EncryptionKey,
    tenant: &TenantId,
    envelope: &str,
) -> Result<SecretString, SecretError> {
    let parsed = Envelope::parse(tenant, envelope)?;
    if let Some(key_id) = parsed.key_id
        && key_id != key.id()
    {
        return Err(SecretError::UnknownKey {
            tenant: tenant.clone(),
            key_id: key_id.to_owned(),
        });
    }
    parsed.open(key, tenant)
}

/// A parsed envelope (either version).
struct Envelope<'a> {
    /// Version and key id, as authenticated with the ciphertext.
    header: &'a str,
    /// `None` for `tenora:v1:`.
    key_id: Option<&'a str>,
    nonce: Vec<u8>,
    ciphertext: Vec<u8>,
}

impl<'a> Envelope<'a> {
    fn parse(tenant: &TenantId, envelope: &'a str) -> Result<Self, SecretError> {
        let malformed = |reason: &str| SecretError::Malformed {
            tenant: tenant.clone(),
            reason: reason.to_owned(),
        };
        let (header_len, key_id) = if let Some(rest) = envelope.strip_prefix(ENVELOPE_V2) {
            let (key_id, _) = rest
                .split_once(':')
                .ok_or_else(|| malformed("missing `:` after the key id"))?;
            if key_id.len() != KEY_ID_LEN {
                return Err(malformed("the key id is not 8 characters"));
            }
            (ENVELOPE_V2.len() + key_id.len() + 1, Some(key_id))
        } else if envelope.starts_with(ENVELOPE_V1) {
            (ENVELOPE_V1.len(), None)
        } else if envelope.starts_with("tenora:") {
            return Err(malformed("unsupported envelope version; upgrade Tenora"));
        } else {
            return Err(malformed(
                "it does not start with `tenora:v2:` or `tenora:v1:`",
            ));
        };
        let (header, body) = envelope.split_at(header_len);
        let (nonce, ciphertext) = body
            .split_once(':')
            .ok_or_else(|| malformed("missing `:` between nonce and ciphertext"))?;
        let nonce = URL_SAFE_NO_PAD
            .decode(nonce)
            .ok()
            .filter(|n| n.len() == 12)
            .ok_or_else(|| malformed("the nonce is not 12 bytes of base64url"))?;
        let ciphertext = URL_SAFE_NO_PAD
            .decode(ciphertext)
            .map_err(|_| malformed("the ciphertext is not base64url"))?;
        Ok(Envelope {
            header,
            key_id,
            nonce,
            ciphertext,
        })
    }

    fn open(&self, key: &EncryptionKey, tenant: &TenantId) -> Result<SecretString, SecretError> {
        let aad = associated_data(self.header, tenant);
        let plain = key
            .cipher()
            .decrypt(
                Nonce::from_slice(&self.nonce),
                Payload {
                    msg: &self.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::Decrypt(tenant.clone()))?;
        let plain = Zeroizing::new(plain);
        let text = std::str::from_utf8(&plain).map_err(|_| SecretError::Malformed {
            tenant: tenant.clone(),
            reason: "not UTF-8 after decryption".to_owned(),
        })?;
        Ok(SecretString::new(text))
    }
}

/// Turns a password into what the registry stores: an envelope with a key, `plain:` without.
pub(crate) fn seal(
    keys: &KeyRing,
    allow_plaintext: bool,
    tenant: &TenantId,
    password: &str,
) -> Result<String, SecretError> {
    match keys.current() {
        Some(key) => Ok(encrypt_password(key, tenant, password)),
        None if allow_plaintext => {
            tracing::warn!(
                tenant = %tenant,
                "no encryption key configured (TENORA_KEY): storing the tenant password in \
                 plain text, as secrets.allow_plaintext allows"
            );
            Ok(format!("{PLAIN_PREFIX}{password}"))
        }
        None => Err(SecretError::PlaintextRefused(tenant.clone())),
    }
}

/// Reads what the registry stored back into a password.
/// An unencrypted value is read when no key is configured, or when `allow_plaintext` is on.
pub(crate) fn open(
    keys: &KeyRing,
    allow_plaintext: bool,
    tenant: &TenantId,
    stored: &str,
) -> Result<SecretString, SecretError> {
    if let Some(plain) = stored.strip_prefix(PLAIN_PREFIX) {
        if keys.current().is_some() && !allow_plaintext {
            return Err(SecretError::PlaintextWithKey(tenant.clone()));
        }
        return Ok(SecretString::new(plain));
    }
    if keys.is_empty() {
        return Err(SecretError::MissingKey(tenant.clone()));
    }
    keys.open(tenant, stored)
}

/// The stored value of a password rotation in progress, from the new and the old stored values.
pub(crate) fn rotating_value(new: &str, old: &str) -> String {
    format!("{ROTATING}{new} {old}")
}

/// The new and the old stored values of a rotation in progress; `None` for any other value.
pub(crate) fn split_rotating(stored: &str) -> Option<(&str, &str)> {
    stored.strip_prefix(ROTATING)?.split_once(' ')
}

/// The passwords a stored value allows, the one to try first first: one, or the new and the
/// old of a rotation in progress.
pub(crate) fn open_candidates(
    keys: &KeyRing,
    allow_plaintext: bool,
    tenant: &TenantId,
    stored: &str,
) -> Result<Vec<SecretString>, SecretError> {
    match split_rotating(stored) {
        // The old value is only a fallback: one that no longer opens (its key was removed)
        // does not stop the new one.
        Some((new, old)) => {
            let mut candidates = vec![open(keys, allow_plaintext, tenant, new)?];
            candidates.extend(open(keys, allow_plaintext, tenant, old).ok());
            Ok(candidates)
        }
        None if stored.starts_with(ROTATING) => Err(SecretError::Malformed {
            tenant: tenant.clone(),
            reason: "a password rotation value without its two parts".to_owned(),
        }),
        None => Ok(vec![open(keys, allow_plaintext, tenant, stored)?]),
    }
}

/// Opens a stored value for re-sealing it: unencrypted values are read whatever
/// `allow_plaintext` says (the point is to seal them), envelopes with any key of the ring.
pub(crate) fn open_any(
    keys: &KeyRing,
    tenant: &TenantId,
    stored: &str,
) -> Result<Vec<SecretString>, SecretError> {
    let one = |value: &str| match value.strip_prefix(PLAIN_PREFIX) {
        Some(plain) => Ok(SecretString::new(plain)),
        None => keys.open(tenant, value),
    };
    match split_rotating(stored) {
        Some((new, old)) => Ok(vec![one(new)?, one(old)?]),
        None => Ok(vec![one(stored)?]),
    }
}

/// Seals `passwords` (one, or the new and old of a rotation) with `key`, as stored.
pub(crate) fn seal_all(
    key: &EncryptionKey,
    tenant: &TenantId,
    passwords: &[SecretString],
) -> String {
    let sealed: Vec<String> = passwords
        .iter()
        .map(|p| encrypt_password(key, tenant, p.expose()))
        .collect();
    match sealed.as_slice() {
        [new, old] => rotating_value(new, old),
        _ => sealed.concat(),
    }
}

/// Whether `stored` is sealed with the key `key_id` throughout (both values of a rotation).
pub(crate) fn sealed_with(stored: &str, key_id: &str) -> bool {
    let with = |value: &str| Sealing::of(value) == Sealing::Key(key_id.to_owned());
    match split_rotating(stored) {
        Some((new, old)) => with(new) && with(old),
        None => with(stored),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    #[test]
    fn generated_passwords_are_long_distinct_and_plain() {
        let a = generate_password();
        let b = generate_password();
        assert_eq!(a.expose().len(), GENERATED_PASSWORD_LEN);
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().bytes().all(|c| c.is_ascii_alphanumeric()));
        check_password(a.expose()).unwrap();
        assert_eq!(format!("{a:?}"), "<redacted>");
    }

    #[test]
    fn envelope_round_trip_with_fresh_nonces() {
        let key = EncryptionKey::generate();
        let t = id("acme");
        let e1 = encrypt_password(&key, &t, "hunter2hunter2");
        let e2 = encrypt_password(&key, &t, "hunter2hunter2");
        assert!(e1.starts_with(&format!("tenora:v2:{}:", key.id())));
        assert_ne!(e1, e2, "each encryption uses a new nonce");
        assert!(!e1.contains("hunter2"));
        assert_eq!(
            decrypt_password(&key, &t, &e1).unwrap().expose(),
            "hunter2hunter2"
        );
    }

    #[test]
    fn wrong_key_and_swapped_rows_fail_clearly() {
        let key = EncryptionKey::generate();
        let other = EncryptionKey::generate();
        let e = encrypt_password(&key, &id("acme"), "hunter2hunter2");
        // The envelope names its key: another key is told apart before decrypting.
        assert_eq!(
            decrypt_password(&other, &id("acme"), &e).unwrap_err(),
            SecretError::UnknownKey {
                tenant: id("acme"),
                key_id: key.id()
            }
        );
        // A ciphertext copied into another tenant's row does not open there.
        assert_eq!(
            decrypt_password(&key, &id("globex"), &e).unwrap_err(),
            SecretError::Decrypt(id("globex"))
        );
        let msg = decrypt_password(&key, &id("acme"), "garbage")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("malformed"), "{msg}");
        let mut tampered = e.clone();
        tampered.pop();
        tampered.push(if e.ends_with('A') { 'B' } else { 'A' });
        assert!(decrypt_password(&key, &id("acme"), &tampered).is_err());
    }

    #[test]
    fn keys_parse_from_base64_and_hex_and_never_print() {
        let key = EncryptionKey::generate();
        let b64 = key.to_base64();
        let parsed = EncryptionKey::parse(b64.expose()).unwrap();
        let e = encrypt_password(&key, &id("a"), "password1");
        assert_eq!(
            decrypt_password(&parsed, &id("a"), &e).unwrap().expose(),
            "password1"
        );
        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        EncryptionKey::parse(hex).unwrap();
        let err = EncryptionKey::parse("dG9vIHNob3J0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("decodes to 9 bytes"), "{err}");
        assert!(!err.contains("dG9vIHNob3J0"));
        assert_eq!(format!("{key:?}"), "EncryptionKey(<redacted>)");
    }

    #[test]
    fn seal_and_open() {
        let key = EncryptionKey::generate();
        let ring = KeyRing::new(Some(key.clone()), []);
        let none = KeyRing::default();
        let t = id("acme");
        let sealed = seal(&ring, false, &t, "password1").unwrap();
        assert_eq!(
            open(&ring, false, &t, &sealed).unwrap().expose(),
            "password1"
        );
        assert_eq!(
            open(&none, false, &t, &sealed).unwrap_err(),
            SecretError::MissingKey(t.clone())
        );
        // Plain text only on purpose.
        assert_eq!(
            seal(&none, false, &t, "password1").unwrap_err(),
            SecretError::PlaintextRefused(t.clone())
        );
        let plain = seal(&none, true, &t, "password1").unwrap();
        assert_eq!(plain, "plain:password1");
        assert_eq!(
            open(&none, false, &t, &plain).unwrap().expose(),
            "password1"
        );
        assert_eq!(
            open(&ring, false, &t, &plain).unwrap_err(),
            SecretError::PlaintextWithKey(t.clone())
        );
        assert_eq!(open(&ring, true, &t, &plain).unwrap().expose(), "password1");
        // Re-sealing reads plain text whatever allow_plaintext says.
        assert_eq!(
            open_any(&ring, &t, &plain).unwrap()[0].expose(),
            "password1"
        );
        // A rotation in progress: both values, the new first.
        let rotating = rotating_value(&sealed, &plain);
        assert_eq!(Sealing::of(&rotating), Sealing::Rotating);
        let both = open_candidates(&ring, true, &t, &rotating).unwrap();
        assert_eq!(
            (both[0].expose(), both[1].expose()),
            ("password1", "password1")
        );
        assert!(
            !sealed_with(&rotating, &key.id()),
            "the old value is plain text"
        );
        let resealed = seal_all(&key, &t, &both);
        assert!(sealed_with(&resealed, &key.id()));
        assert_eq!(open_any(&ring, &t, &resealed).unwrap().len(), 2);
        assert!(open_candidates(&ring, true, &t, "tenora:rotating:nospace").is_err());
    }

    /// A `tenora:v1:` envelope as Tenora 0.1 wrote it (no key id; header and tenant as
    /// associated data).
    fn v1_envelope(key: &EncryptionKey, tenant: &TenantId, password: &str) -> String {
        seal_under(key, ENVELOPE_V1, tenant, password)
    }

    #[test]
    fn key_ids_are_stable_short_and_distinct() {
        let (a, b) = (EncryptionKey::generate(), EncryptionKey::generate());
        assert_eq!(a.id().len(), KEY_ID_LEN);
        assert_eq!(a.id(), a.clone().id());
        assert_ne!(a.id(), b.id());
        assert!(!a.id().contains(':'));
        // A known key has a known id (the envelope format is stable across versions).
        let zero = EncryptionKey::parse(&"00".repeat(32)).unwrap();
        assert_eq!(zero.id(), "Fr3LqMOv");
        assert_eq!(
            Sealing::of(&encrypt_password(&zero, &id("a"), "password1")),
            Sealing::Key(zero.id())
        );
    }

    #[test]
    fn a_key_ring_opens_what_each_of_its_keys_sealed() {
        let (old, new, stranger) = (
            EncryptionKey::generate(),
            EncryptionKey::generate(),
            EncryptionKey::generate(),
        );
        let t = id("acme");
        let by_old = encrypt_password(&old, &t, "password-old");
        let by_new = encrypt_password(&new, &t, "password-new");
        let v1_old = v1_envelope(&old, &t, "password-v1");
        let ring = KeyRing::new(Some(new.clone()), [old.clone(), new.clone(), old.clone()]);
        assert_eq!(
            ring.old().len(),
            1,
            "duplicates and the current key are kept once"
        );
        assert_eq!(ring.open(&t, &by_old).unwrap().expose(), "password-old");
        assert_eq!(ring.open(&t, &by_new).unwrap().expose(), "password-new");
        let (pw, key) = ring.open_with(&t, &v1_old).unwrap();
        assert_eq!((pw.expose(), key.id()), ("password-v1", old.id()));
        assert_eq!(Sealing::of(&v1_old), Sealing::V1);
        // The single-key API reads v1 too, and names the key of a v2 value it cannot open.
        assert_eq!(
            decrypt_password(&old, &t, &v1_old).unwrap().expose(),
            "password-v1"
        );
        assert_eq!(
            decrypt_password(&new, &t, &by_old).unwrap_err(),
            SecretError::UnknownKey {
                tenant: t.clone(),
                key_id: old.id()
            }
        );
        // Without the old key: its v2 values name the missing key, its v1 values fail.
        let only_new = KeyRing::new(Some(new.clone()), []);
        let err = only_new.open(&t, &by_old).unwrap_err();
        assert_eq!(
            err,
            SecretError::UnknownKey {
                tenant: t.clone(),
                key_id: old.id()
            }
        );
        assert!(err.to_string().contains("TENORA_OLD_KEYS"), "{err}");
        assert_eq!(
            only_new.open(&t, &v1_old).unwrap_err(),
            SecretError::Decrypt(t.clone())
        );
        // A forged key id: the id is authenticated with the ciphertext.
        let forged = by_old.replacen(&old.id(), &stranger.id(), 1);
        let with_stranger = KeyRing::new(Some(stranger), [old.clone()]);
        assert_eq!(
            with_stranger.open(&t, &forged).unwrap_err(),
            SecretError::Decrypt(t.clone())
        );
        // Moved to another tenant's row.
        assert_eq!(
            ring.open(&id("globex"), &by_old).unwrap_err(),
            SecretError::Decrypt(id("globex"))
        );
        assert_eq!(
            format!("{ring:?}"),
            format!(
                "KeyRing {{ current: Some({:?}), old: [{:?}] }}",
                new.id(),
                old.id()
            )
        );
    }

    #[test]
    fn password_rule() {
        check_password("abcdEFGH1234!").unwrap();
        for bad in [
            "short",
            "has space 123",
            "quote'123456",
            "back\\slash12",
            "ünïcödé123",
        ] {
            assert!(check_password(bad).is_err(), "{bad}");
        }
    }
}
