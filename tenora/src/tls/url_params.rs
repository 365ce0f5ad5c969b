//! Takes the TLS parameters out of a connection URL's query string (the drivers do not know
//! libpq's `sslrootcert` or MySQL's `ssl-mode`; Tenora applies them itself).

use super::Vocabulary;
use crate::error::{Error, Result};

/// mysql_async's own TLS parameters: refused, so one vocabulary decides.
const DRIVER_TLS_PARAMS: [&str; 4] = [
    "require_ssl",
    "verify_ca",
    "verify_identity",
    "built_in_roots",
];

/// Splits `url` into the URL without its TLS query parameters and those parameters (names as
/// in [`Vocabulary::keys`], values percent-decoded). MySQL names may be written with `_` for
/// `-`, as the MySQL client allows. PostgreSQL's `key=value` strings are handled too (values
/// of the TLS keys without quotes).
pub(crate) fn split_tls_params(
    url: &str,
    vocabulary: Vocabulary,
) -> Result<(String, Vec<(String, String)>)> {
    if !url.contains("://") {
        return split_key_values(url, vocabulary);
    }
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, query),
        None => return Ok((url.to_owned(), Vec::new())),
    };
    // A fragment is not part of the query.
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let keys = vocabulary.keys();
    let mut kept = Vec::new();
    let mut tls = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let canonical = match vocabulary {
            Vocabulary::Libpq => name.to_owned(),
            Vocabulary::Mysql => name.replace('_', "-"),
        };
        if keys.contains(&canonical.as_str()) {
            let value = percent_decode(value).ok_or_else(|| {
                Error::config(
                    format!("base.url {name}"),
                    "is not valid percent-encoded UTF-8",
                )
            })?;
            tls.push((canonical, value));
        } else if vocabulary == Vocabulary::Mysql && DRIVER_TLS_PARAMS.contains(&name) {
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

/// The TLS keys of a `key=value key=value` connection string, taken out of it (the rest of the
/// text is kept byte for byte).
fn split_key_values(text: &str, vocabulary: Vocabulary) -> Result<(String, Vec<(String, String)>)> {
    let keys = vocabulary.keys();
    let mut out = String::with_capacity(text.len());
    let mut tls = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let start = rest.len() - rest.trim_start().len();
        let token_len = rest[start..]
            .find(char::is_whitespace)
            .unwrap_or(rest.len() - start);
        let token = &rest[start..start + token_len];
        match token.split_once('=') {
            Some((name, value)) if keys.contains(&name) => {
                if value.starts_with('\'') || value.is_empty() {
                    return Err(Error::config(
                        format!("base.url {name}"),
                        "write it without quotes or spaces (or use the URL form)",
                    ));
                }
                tls.push((name.to_owned(), value.to_owned()));
                out.push_str(&rest[..start]);
            }
            _ => out.push_str(&rest[..start + token_len]),
        }
        rest = &rest[start + token_len..];
    }
    Ok((out, tls))
}

/// `%XX` escapes and `+` as in a query string; `None` if an escape is broken or the result is
/// not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
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
             &sslrootcert=%2Fetc%2Fca.pem",
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
                ("sslrootcert".to_owned(), "/etc/ca.pem".to_owned())
            ]
        );
    }

    #[test]
    fn splits_mysql_params_with_either_spelling() {
        let (url, tls) = split_tls_params(
            "mysql://root@h/db?ssl_mode=VERIFY_CA&ssl-ca=ca.pem",
            Vocabulary::Mysql,
        )
        .unwrap();
        assert_eq!(url, "mysql://root@h/db");
        assert_eq!(tls[0], ("ssl-mode".to_owned(), "VERIFY_CA".to_owned()));
        assert_eq!(tls[1], ("ssl-ca".to_owned(), "ca.pem".to_owned()));
        let err = split_tls_params("mysql://root@h/db?require_ssl=true", Vocabulary::Mysql)
            .unwrap_err()
            .to_string();
        assert!(err.contains("use ssl-mode"), "{err}");
    }

    #[test]
    fn splits_key_value_strings() {
        let (url, tls) = split_tls_params(
            "host=h password='a  b' sslmode=verify-ca user=u",
            Vocabulary::Libpq,
        )
        .unwrap();
        // The rest is kept byte for byte (the removed token's leading space stays).
        assert_eq!(url, "host=h password='a  b'  user=u");
        assert_eq!(tls, vec![("sslmode".to_owned(), "verify-ca".to_owned())]);
        assert!(split_tls_params("postgres://h/db?sslrootcert=%zz", Vocabulary::Libpq).is_err());
    }
}
