//! Takes the TLS parameters out of a connection string (the drivers do not know libpq's
//! `sslrootcert` or MySQL's `ssl-mode`; Tenora applies them itself).
//!
//! What the drivers would still read as a TLS setting after this (a spelling not caught here)
//! is refused by the backends, so a setting is never silently weakened.

use super::Vocabulary;
use crate::error::{Error, Result};

/// mysql_async's own TLS parameters: refused, so one vocabulary decides.
const DRIVER_TLS_PARAMS: [&str; 4] = [
    "require_ssl",
    "verify_ca",
    "verify_identity",
    "built_in_roots",
];

/// Whether `text` is a URL of the vocabulary's server (else, for PostgreSQL, a `key=value`
/// connection string, whose values may contain `://`).
fn is_url(text: &str, vocabulary: Vocabulary) -> bool {
    let lower = text.trim_start().to_ascii_lowercase();
    match vocabulary {
        Vocabulary::Libpq => lower.starts_with("postgres://") || lower.starts_with("postgresql://"),
        Vocabulary::Mysql => lower.contains("://"),
    }
}

/// Splits `url` into the URL without its TLS query parameters and those parameters (names as
/// in [`Vocabulary::keys`], names and values percent-decoded). MySQL names may be written with
/// `_` for `-`, as the MySQL client allows. PostgreSQL's `key=value` strings are handled too.
pub(crate) fn split_tls_params(
    url: &str,
    vocabulary: Vocabulary,
) -> Result<(String, Vec<(String, String)>)> {
    if !is_url(url, vocabulary) {
        return split_key_values(url, vocabulary);
    }
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, query),
        None => return Ok((url.to_owned(), Vec::new())),
    };
    // A fragment ends a MySQL URL's query (the driver parses it as a URL); tokio-postgres has
    // no fragments.
    let (query, fragment) = match (vocabulary, query.split_once('#')) {
        (Vocabulary::Mysql, Some((q, f))) => (q, Some(f)),
        _ => (query, None),
    };
    let keys = vocabulary.keys();
    let mut kept = Vec::new();
    let mut tls = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(raw_name, vocabulary).unwrap_or_else(|| raw_name.to_owned());
        let canonical = match vocabulary {
            Vocabulary::Libpq => name.clone(),
            Vocabulary::Mysql => name.replace('_', "-"),
        };
        if keys.contains(&canonical.as_str()) {
            let value = percent_decode(value, vocabulary).ok_or_else(|| {
                Error::config(
                    format!("base.url {name}"),
                    "is not valid percent-encoded UTF-8",
                )
            })?;
            tls.push((canonical, value));
        } else if vocabulary == Vocabulary::Mysql && DRIVER_TLS_PARAMS.contains(&name.as_str()) {
            return Err(Error::config(
                format!("base.url {name}"),
                "is not supported; use ssl-mode (DISABLED, PREFERRED, REQUIRED, VERIFY_CA, \
                 VERIFY_IDENTITY) and ssl-ca",
            ));
        } else {
            kept.push(pair);
        }
    }
    let mut out = head.to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    Ok((out, tls))
}

/// The TLS keys of a libpq `key = value` connection string, taken out of it; the rest of the
/// text is kept byte for byte. Values are read as libpq reads them: single-quoted with `\`
/// escapes, or up to the next space; spaces around `=` are allowed.
fn split_key_values(text: &str, vocabulary: Vocabulary) -> Result<(String, Vec<(String, String)>)> {
    let keys = vocabulary.keys();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut tls = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        // Whitespace between pairs is kept.
        if bytes[i].is_ascii_whitespace() {
            out.push(bytes[i] as char);
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let name = &text[start..i];
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] != b'=' {
            // Not a pair: the driver will say so.
            out.push_str(&text[start..i]);
            continue;
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = Vec::new();
        if i < bytes.len() && bytes[i] == b'\'' {
            i += 1;
            while i < bytes.len() && bytes[i] != b'\'' {
                if bytes[i] == b'\\' && i + 1 < bytes.len() {
                    i += 1;
                }
                value.push(bytes[i]);
                i += 1;
            }
            i = (i + 1).min(bytes.len());
        } else {
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                if bytes[i] == b'\\' && i + 1 < bytes.len() {
                    i += 1;
                }
                value.push(bytes[i]);
                i += 1;
            }
        }
        if keys.contains(&name) {
            let value = String::from_utf8(value)
                .map_err(|_| Error::config(format!("base.url {name}"), "is not valid UTF-8"))?;
            tls.push((name.to_owned(), value));
        } else {
            out.push_str(&text[start..i]);
        }
    }
    Ok((out, tls))
}

/// `%XX` escapes (two hex digits), and `+` as a space in MySQL URLs (which its driver reads as
/// a form-encoded query; libpq does not); `None` if an escape is broken or the result is not
/// UTF-8.
fn percent_decode(text: &str, vocabulary: Vocabulary) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 3;
            }
            b'+' if vocabulary == Vocabulary::Mysql => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_libpq_params() {
        let (url, tls) = split_tls_params(
            "postgres://u:p@db.example.com:5432/app?sslmode=verify-full&application_name=x\
             &ssl%72ootcert=%2Fetc%2Fdb+ca.pem",
            Vocabulary::Libpq,
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://u:p@db.example.com:5432/app?application_name=x"
        );
        assert_eq!(
            tls,
            vec![
                ("sslmode".to_owned(), "verify-full".to_owned()),
                ("sslrootcert".to_owned(), "/etc/db+ca.pem".to_owned())
            ]
        );
        assert!(split_tls_params("postgres://h/db?sslrootcert=%zz", Vocabulary::Libpq).is_err());
        assert!(split_tls_params("postgres://h/db?sslrootcert=%+4", Vocabulary::Libpq).is_err());
    }

    #[test]
    fn splits_mysql_params_with_either_spelling() {
        let (url, tls) = split_tls_params(
            "mysql://root@h/db?ssl_mode=VERIFY_CA&ssl-ca=my+ca.pem#frag",
            Vocabulary::Mysql,
        )
        .unwrap();
        assert_eq!(url, "mysql://root@h/db#frag");
        assert_eq!(tls[0], ("ssl-mode".to_owned(), "VERIFY_CA".to_owned()));
        assert_eq!(tls[1], ("ssl-ca".to_owned(), "my ca.pem".to_owned()));
        let err = split_tls_params("mysql://root@h/db?require_ssl=true", Vocabulary::Mysql)
            .unwrap_err()
            .to_string();
        assert!(err.contains("use ssl-mode"), "{err}");
    }

    #[test]
    fn splits_key_value_strings() {
        let (url, tls) = split_tls_params(
            "host=h password='a sslmode=disable b' sslmode = verify-ca \
             application_name=x://y user=u",
            Vocabulary::Libpq,
        )
        .unwrap();
        // The rest is kept byte for byte (the removed pair's surrounding spaces stay).
        assert_eq!(
            url,
            "host=h password='a sslmode=disable b'  application_name=x://y user=u"
        );
        assert_eq!(tls, vec![("sslmode".to_owned(), "verify-ca".to_owned())]);
        let (_, tls) =
            split_tls_params(r"sslrootcert='/a b/it\'s.pem'", Vocabulary::Libpq).unwrap();
        assert_eq!(tls[0].1, "/a b/it's.pem");
    }
}
