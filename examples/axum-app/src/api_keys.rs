//! Per-tenant API keys: `hex(HMAC-SHA256(app secret, tenant id))`. Stateless, so the
//! authorizer needs no database round trip; rotate every key at once by changing the secret.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tenora::TenantId;

/// The secret API keys are derived from. Never printed.
#[derive(Clone)]
pub struct ApiKeys {
    secret: Vec<u8>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKeys(..)")
    }
}

impl ApiKeys {
    /// Keys derived from `secret` (at least 16 bytes).
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Self, String> {
        let secret = secret.into();
        if secret.len() < 16 {
            return Err("the API key secret must have at least 16 bytes".into());
        }
        Ok(ApiKeys { secret })
    }

    /// A random secret: keys are valid until the process stops.
    pub fn random() -> Self {
        use rand::RngCore as _;
        let mut secret = vec![0; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        ApiKeys { secret }
    }

    fn mac(&self, tenant: &TenantId) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key");
        mac.update(tenant.as_ref().as_bytes());
        mac
    }

    /// The API key of `tenant`, as 64 hex digits.
    pub fn key_of(&self, tenant: &TenantId) -> String {
        self.mac(tenant)
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether `key` is `tenant`'s API key (compared in constant time).
    pub fn check(&self, tenant: &TenantId, key: &str) -> bool {
        match decode_hex(key) {
            Some(bytes) => self.mac(tenant).verify_slice(&bytes).is_ok(),
            None => false,
        }
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_per_tenant_and_checked() {
        let keys = ApiKeys::new("0123456789abcdef-secret").unwrap();
        let (acme, globex) = (
            TenantId::new("acme").unwrap(),
            TenantId::new("globex").unwrap(),
        );
        let key = keys.key_of(&acme);
        assert_eq!(key.len(), 64);
        assert!(keys.check(&acme, &key));
        assert!(!keys.check(&globex, &key));
        assert!(!keys.check(&acme, &key[..63]));
        assert!(!keys.check(&acme, "zz"));
        assert!(!keys.check(&acme, &"é".repeat(32)));
        assert!(ApiKeys::new("short").is_err());
    }
}
