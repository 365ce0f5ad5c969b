//! Property tests: whatever the input, the envelope decoder, `TenantId` and the config loader
//! give a value or a clear error — never a panic; envelopes round-trip; a value moved to
//! another tenant's row never decrypts.

use proptest::prelude::*;
use tenora::secret::{KeyRing, Sealing, SecretError, decrypt_password, encrypt_password};
use tenora::{Config, EncryptionKey, TenantId};

/// Valid tenant ids.
fn tenant_id() -> impl Strategy<Value = TenantId> {
    "[a-z][a-z0-9_]{0,62}".prop_map(|s| TenantId::new(s).unwrap())
}

/// Stored values: arbitrary text, and text behind each envelope prefix (where parsers work).
fn stored_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "tenora:v1:[A-Za-z0-9_:=+/-]{0,80}".prop_map(String::from),
        "tenora:v2:[A-Za-z0-9_:=+/-]{0,90}".prop_map(String::from),
        "tenora:v[0-9]{1,3}:.{0,40}".prop_map(String::from),
        "plain:.{0,40}".prop_map(String::from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_stored_value_opens_or_fails_cleanly(stored in stored_value(), tenant in tenant_id()) {
        let key = EncryptionKey::parse(&"11".repeat(32)).unwrap();
        let ring = KeyRing::new(Some(key.clone()), [EncryptionKey::parse(&"22".repeat(32)).unwrap()]);
        // Neither may panic; an error says which tenant, never the value.
        for result in [decrypt_password(&key, &tenant, &stored), ring.open(&tenant, &stored)] {
            if let Err(e) = result {
                let message = e.to_string();
                prop_assert!(message.contains(tenant.as_str()), "{message}");
            }
        }
        let _ = Sealing::of(&stored);
    }

    #[test]
    fn envelopes_round_trip(password in "[!-~]{8,128}", tenant in tenant_id()) {
        let key = EncryptionKey::generate();
        let sealed = encrypt_password(&key, &tenant, &password);
        prop_assert_eq!(Sealing::of(&sealed), Sealing::Key(key.id()));
        prop_assert!(!sealed.contains(&password) || password.len() < 12);
        let opened = decrypt_password(&key, &tenant, &sealed).unwrap();
        prop_assert_eq!(opened.expose(), password.as_str());
        let ring = KeyRing::new(Some(EncryptionKey::generate()), [key]);
        let reopened = ring.open(&tenant, &sealed).unwrap();
        prop_assert_eq!(reopened.expose(), password.as_str());
    }

    #[test]
    fn a_value_moved_to_another_row_never_decrypts(
        password in "[!-~]{8,40}",
        a in tenant_id(),
        b in tenant_id(),
    ) {
        prop_assume!(a != b);
        let key = EncryptionKey::generate();
        let sealed = encrypt_password(&key, &a, &password);
        prop_assert_eq!(
            decrypt_password(&key, &b, &sealed).unwrap_err(),
            SecretError::Decrypt(b.clone())
        );
    }

    #[test]
    fn tenant_ids_are_valid_or_refused(input in prop_oneof![any::<String>(), "[a-z_0-9A-Z-]{0,70}".prop_map(String::from)]) {
        match TenantId::new(&input) {
            Ok(id) => {
                prop_assert_eq!(id.as_str(), input.as_str());
                prop_assert!(input.len() <= TenantId::MAX_LEN);
                prop_assert!(input.starts_with(|c: char| c.is_ascii_lowercase()));
                prop_assert!(input.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
            }
            Err(e) => prop_assert!(e.to_string().contains("invalid tenant id")),
        }
    }

    #[test]
    fn any_config_text_loads_or_fails_cleanly(text in any::<String>()) {
        if let Ok(config) = Config::from_toml(&text) {
            let _ = config.validate();
            let _ = config.key_ring();
        }
    }

    #[test]
    fn config_values_of_any_shape_load_or_fail_cleanly(
        client in prop_oneof![Just("sqlite".to_owned()), Just("postgres".to_owned()), Just("mysql".to_owned()), ".{0,10}".prop_map(String::from)],
        url in ".{0,60}",
        prefix in ".{0,40}",
        key in ".{0,70}",
        number in prop_oneof![0i64..200, any::<i64>()],
    ) {
        let text = format!(
            "[base]\nclient = {client:?}\nurl = {url:?}\ndatabase = {url:?}\n\
             [tenant]\ndatabase_prefix = {prefix:?}\nuser_prefix = {prefix:?}\n\
             [tenant.pool]\nmax_size = {number}\n\
             [pool_cache]\nmax_connections = {number}\n\
             [secrets]\nkey = {key:?}\nold_keys = [{key:?}]\n"
        );
        match Config::from_toml(&text) {
            Ok(config) => {
                if let Err(e) = config.validate().and_then(|()| config.key_ring().map(drop)) {
                    // Never echo a key back.
                    if key.len() > 8 {
                        prop_assert!(!e.to_string().contains(&key), "{e}");
                    }
                }
            }
            Err(e) => {
                if key.len() > 8 {
                    prop_assert!(!e.to_string().contains(&key), "{e}");
                }
            }
        }
    }
}
