//! Secrets: generated tenant passwords, and their encryption at rest.
//!
//! Tenant passwords are stored in the registry as a versioned text envelope
//!
//! ```text
//! tenora:v1:<nonce>:<ciphertext>          (both base64url, no padding)
//! ```
//!
//! sealed with ChaCha20-Poly1305 under a 32-byte [`EncryptionKey`], with a fresh random nonce per
//! encryption and the tenant id as associated data: a ciphertext copied into another tenant's row
//! does not decrypt, and a wrong key is an error, never garbage. Without a key, passwords are
//! stored as `plain:<password>` and Tenora warns.
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

const ENVELOPE_V1: &str = "tenora:v1:";
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
         (check TENORA_KEY) or the value was copied from another tenant's row"
    )]
    Decrypt(TenantId),
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

fn associated_data(tenant: &TenantId) -> Vec<u8> {
    [ENVELOPE_V1.as_bytes(), tenant.as_str().as_bytes()].concat()
}

/// Seals `password` for `tenant` under `key` into a `tenora:v1:` envelope.
pub fn encrypt_password(key: &EncryptionKey, tenant: &TenantId, password: &str) -> String {
    let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
    let aad = associated_data(tenant);
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
        "{ENVELOPE_V1}{}:{}",
        URL_SAFE_NO_PAD.encode(nonce),
        URL_SAFE_NO_PAD.encode(ciphertext)
    )
}

/// Opens an envelope made by [`encrypt_password`] for the same tenant and key.
pub fn decrypt_password(
    key: &EncryptionKey,
    tenant: &TenantId,
    envelope: &str,
) -> Result<SecretString, SecretError> {
    let malformed = |reason: &str| SecretError::Malformed {
        tenant: tenant.clone(),
        reason: reason.to_owned(),
    };
    let Some(body) = envelope.strip_prefix(ENVELOPE_V1) else {
        return Err(if envelope.starts_with("tenora:") {
            malformed("unsupported envelope version; upgrade Tenora")
        } else {
            malformed("it does not start with `tenora:v1:`")
        });
    };
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
    let aad = associated_data(tenant);
    let plain = key
        .cipher()
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| SecretError::Decrypt(tenant.clone()))?;
    let plain = Zeroizing::new(plain);
    let text = std::str::from_utf8(&plain).map_err(|_| malformed("not UTF-8 after decryption"))?;
    Ok(SecretString::new(text))
}

/// Turns a password into what the registry stores: an envelope with a key, `plain:` without.
pub(crate) fn seal(
    key: Option<&EncryptionKey>,
    allow_plaintext: bool,
    tenant: &TenantId,
    password: &str,
) -> Result<String, SecretError> {
    match key {
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
    key: Option<&EncryptionKey>,
    allow_plaintext: bool,
    tenant: &TenantId,
    stored: &str,
) -> Result<SecretString, SecretError> {
    if let Some(plain) = stored.strip_prefix(PLAIN_PREFIX) {
        if key.is_some() && !allow_plaintext {
            return Err(SecretError::PlaintextWithKey(tenant.clone()));
        }
        return Ok(SecretString::new(plain));
    }
    match key {
        Some(key) => decrypt_password(key, tenant, stored),
        None => Err(SecretError::MissingKey(tenant.clone())),
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
        assert!(e1.starts_with("tenora:v1:"));
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
        assert_eq!(
            decrypt_password(&other, &id("acme"), &e).unwrap_err(),
            SecretError::Decrypt(id("acme"))
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
        let t = id("acme");
        let sealed = seal(Some(&key), false, &t, "password1").unwrap();
        assert_eq!(
            open(Some(&key), false, &t, &sealed).unwrap().expose(),
            "password1"
        );
        assert_eq!(
            open(None, false, &t, &sealed).unwrap_err(),
            SecretError::MissingKey(t.clone())
        );
        // Plain text only on purpose.
        assert_eq!(
            seal(None, false, &t, "password1").unwrap_err(),
            SecretError::PlaintextRefused(t.clone())
        );
        let plain = seal(None, true, &t, "password1").unwrap();
        assert_eq!(plain, "plain:password1");
        assert_eq!(open(None, false, &t, &plain).unwrap().expose(), "password1");
        assert_eq!(
            open(Some(&key), false, &t, &plain).unwrap_err(),
            SecretError::PlaintextWithKey(t.clone())
        );
        assert_eq!(
            open(Some(&key), true, &t, &plain).unwrap().expose(),
            "password1"
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
