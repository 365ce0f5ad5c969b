//! TLS to the database server: how strictly to check it ([`TlsMode`]), which CA to trust and
//! which client certificate to present ([`TlsSettings`]).
//!
//! The settings belong to a server: every connection Tenora opens to it (base pool, admin
//! sessions, tenant pools, migrations, the template path) uses them. They come from the keys of
//! `[base]` and from the connection URL's query parameters, in each server's own vocabulary:
//!
//! | | PostgreSQL (libpq's names) | MySQL / MariaDB (MySQL's names) |
//! |---|---|---|
//! | mode | `sslmode` | `ssl-mode` |
//! | trusted CA (PEM) | `sslrootcert` | `ssl-ca` |
//! | client certificate (PEM) | `sslcert` | `ssl-cert` |
//! | client key (PEM) | `sslkey` | `ssl-key` |
//!
//! TLS is done by rustls (no OpenSSL on the machine needed).

#[cfg(any(feature = "postgres", feature = "mysql"))]
mod load;
#[cfg(feature = "mysql")]
pub(crate) mod mysql;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
mod url_params;
#[cfg(feature = "postgres")]
mod verify;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{BaseConfig, Client};
use crate::error::{Error, Result};

#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) use load::Loaded;
pub(crate) use url_params::split_tls_params;

/// How strictly a connection is protected by TLS.
///
/// Parsed from libpq's names (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`) and
/// from MySQL's (`DISABLED`, `PREFERRED`, `REQUIRED`, `VERIFY_CA`, `VERIFY_IDENTITY`), in any
/// case.
///
/// ```
/// use tenora::TlsMode;
/// assert_eq!("verify-full".parse::<TlsMode>().unwrap(), TlsMode::VerifyFull);
/// assert_eq!("VERIFY_IDENTITY".parse::<TlsMode>().unwrap(), TlsMode::VerifyFull);
/// assert!("allow".parse::<TlsMode>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Plain TCP, never TLS.
    Disable,
    /// TLS when the server offers it, plain otherwise; the certificate is not checked
    /// (protects against eavesdropping, not against an active attacker). The default, as in
    /// libpq and the MySQL client.
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is not checked, unless a CA file is given (then
    /// as [`VerifyCa`](Self::VerifyCa), like libpq and the MySQL client).
    Require,
    /// TLS with a certificate signed by a trusted CA, for any host name.
    VerifyCa,
    /// TLS with a certificate signed by a trusted CA and valid for the host connected to. The
    /// mode to use across any network you do not control.
    VerifyFull,
}

impl TlsMode {
    /// libpq's name (`sslmode`).
    pub fn libpq_name(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }

    /// MySQL's name (`ssl-mode`).
    pub fn mysql_name(self) -> &'static str {
        match self {
            TlsMode::Disable => "DISABLED",
            TlsMode::Prefer => "PREFERRED",
            TlsMode::Require => "REQUIRED",
            TlsMode::VerifyCa => "VERIFY_CA",
            TlsMode::VerifyFull => "VERIFY_IDENTITY",
        }
    }

    /// Whether the server's certificate must chain to a trusted CA.
    pub fn verifies_ca(self) -> bool {
        matches!(self, TlsMode::VerifyCa | TlsMode::VerifyFull)
    }
}

/// A value that is not a TLS mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidTlsMode(String);

impl fmt::Display for InvalidTlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a TLS mode; use disable, prefer, require, verify-ca or verify-full \
             (MySQL: DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY)",
            self.0
        )
    }
}

impl std::error::Error for InvalidTlsMode {}

impl std::str::FromStr for TlsMode {
    type Err = InvalidTlsMode;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        Ok(match norm.as_str() {
            "disable" | "disabled" => TlsMode::Disable,
            "prefer" | "preferred" => TlsMode::Prefer,
            "require" | "required" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" | "verify-identity" => TlsMode::VerifyFull,
            _ => return Err(InvalidTlsMode(s.to_owned())),
        })
    }
}

impl<'de> Deserialize<'de> for TlsMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The TLS settings of one server, resolved from `[base]` and the URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// How strictly to use TLS.
    pub mode: TlsMode,
    /// PEM file of the CA(s) to trust; `None`: the built-in web PKI roots (Mozilla's).
    pub root_cert: Option<PathBuf>,
    /// PEM file of the client certificate (chain) to log in with.
    pub client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    pub client_key: Option<PathBuf>,
}

/// The key names of one server kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Vocabulary {
    Libpq,
    Mysql,
}

impl Vocabulary {
    /// Mode, CA, client certificate, client key.
    pub(crate) fn keys(self) -> [&'static str; 4] {
        match self {
            Vocabulary::Libpq => ["sslmode", "sslrootcert", "sslcert", "sslkey"],
            Vocabulary::Mysql => ["ssl-mode", "ssl-ca", "ssl-cert", "ssl-key"],
        }
    }

    pub(crate) fn mode_name(self, mode: TlsMode) -> &'static str {
        match self {
            Vocabulary::Libpq => mode.libpq_name(),
            Vocabulary::Mysql => mode.mysql_name(),
        }
    }

    /// `sslmode=verify-full` / `ssl-mode=VERIFY_IDENTITY`.
    pub(crate) fn describe_mode(self, mode: TlsMode) -> String {
        format!("{}={}", self.keys()[0], self.mode_name(mode))
    }

    fn server(self) -> &'static str {
        match self {
            Vocabulary::Libpq => "PostgreSQL",
            Vocabulary::Mysql => "MySQL / MariaDB",
        }
    }
}

impl BaseConfig {
    /// The values of `[base]`'s TLS keys of one vocabulary, in [`Vocabulary::keys`] order.
    fn tls_keys(&self, vocabulary: Vocabulary) -> [Option<String>; 4] {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.to_string_lossy().into_owned());
        match vocabulary {
            Vocabulary::Libpq => [
                self.sslmode.map(|m| m.libpq_name().to_owned()),
                path(&self.sslrootcert),
                path(&self.sslcert),
                path(&self.sslkey),
            ],
            Vocabulary::Mysql => [
                self.ssl_mode.map(|m| m.mysql_name().to_owned()),
                path(&self.ssl_ca),
                path(&self.ssl_cert),
                path(&self.ssl_key),
            ],
        }
    }
}

/// Resolves the TLS settings of the `[base]` server: its keys in `[base]` and the URL's query
/// parameters (already split off the URL by [`split_tls_params`]). A key given in both places
/// must have the same value. Relative paths are resolved against `root`.
pub(crate) fn resolve(
    base: &BaseConfig,
    client: Client,
    url_params: &[(String, String)],
    root: &Path,
) -> Result<TlsSettings> {
    let vocabulary = match client {
        Client::Postgres => Vocabulary::Libpq,
        Client::Mysql => Vocabulary::Mysql,
        Client::Sqlite => {
            let set = |v: Vocabulary| base.tls_keys(v).into_iter().any(|k| k.is_some());
            if set(Vocabulary::Libpq) || set(Vocabulary::Mysql) || !url_params.is_empty() {
                return Err(Error::config(
                    "base.sslmode",
                    "SQLite has no server to talk TLS to; remove the TLS settings",
                ));
            }
            return Ok(TlsSettings::default());
        }
    };
    let other = match vocabulary {
        Vocabulary::Libpq => Vocabulary::Mysql,
        Vocabulary::Mysql => Vocabulary::Libpq,
    };
    let keys = vocabulary.keys();
    // The other server's names for the same settings are a mistake worth naming.
    if let Some(i) = base.tls_keys(other).iter().position(Option::is_some) {
        return Err(Error::config(
            format!("base.{}", other.keys()[i]),
            format!(
                "is a {} setting; for {} use `{}`",
                other.server(),
                vocabulary.server(),
                keys[i]
            ),
        ));
    }
    let from_file = base.tls_keys(vocabulary);
    let mut values = from_file;
    for (name, value) in url_params {
        let Some(index) = keys.iter().position(|k| k == name) else {
            continue;
        };
        let value = if index == 0 {
            // Compare modes, not spellings.
            let mode: TlsMode = value.parse().map_err(|e: InvalidTlsMode| {
                Error::config(format!("base.url {name}"), e.to_string())
            })?;
            vocabulary.mode_name(mode).to_owned()
        } else {
            value.clone()
        };
        match &values[index] {
            Some(existing) if *existing != value => {
                return Err(Error::config(
                    format!("base.{name}"),
                    format!(
                        "the URL says `{value}` and [base] says `{existing}`; give it in one \
                         place"
                    ),
                ));
            }
            _ => values[index] = Some(value),
        }
    }
    let [mode, root_cert, client_cert, client_key] = values;
    let resolve_path = |p: Option<String>| {
        p.map(|p| {
            let p = PathBuf::from(p);
            if p.is_absolute() { p } else { root.join(p) }
        })
    };
    let settings = TlsSettings {
        mode: mode
            .map(|m| m.parse().expect("a mode name we wrote"))
            .unwrap_or_default(),
        root_cert: resolve_path(root_cert),
        client_cert: resolve_path(client_cert),
        client_key: resolve_path(client_key),
    };
    if settings.client_cert.is_some() != settings.client_key.is_some() {
        let (given, missing) = if settings.client_cert.is_some() {
            (keys[2], keys[3])
        } else {
            (keys[3], keys[2])
        };
        return Err(Error::config(
            format!("base.{missing}"),
            format!("`{given}` is set without `{missing}`; a client certificate needs both"),
        ));
    }
    if settings.mode == TlsMode::VerifyCa && settings.root_cert.is_none() {
        // Any public CA would do, for any name: nothing an attacker cannot get.
        return Err(Error::config(
            format!("base.{}", keys[1]),
            format!(
                "{} needs the CA that signs the server's certificate; with the public web \
                 roots use {} (which also checks the host name)",
                vocabulary.describe_mode(TlsMode::VerifyCa),
                vocabulary.mode_name(TlsMode::VerifyFull)
            ),
        ));
    }
    if settings.mode == TlsMode::Disable
        && (settings.root_cert.is_some() || settings.client_cert.is_some())
    {
        return Err(Error::config(
            format!("base.{}", keys[0]),
            format!(
                "is {} but certificate files are set; remove them or choose a TLS mode",
                vocabulary.mode_name(TlsMode::Disable)
            ),
        ));
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn keys_and_url_parameters_make_one_setting() {
        let mut config =
            Config::postgres("postgres://u@h/db?sslmode=verify-ca&sslcert=c.pem&sslkey=%2Fk.pem")
                .root("/etc/app");
        config.base.sslrootcert = Some("ca.pem".into());
        let tls = config.tls().unwrap();
        assert_eq!(tls.mode, TlsMode::VerifyCa);
        assert_eq!(tls.root_cert.as_deref(), Some(Path::new("/etc/app/ca.pem")));
        assert_eq!(
            tls.client_cert.as_deref(),
            Some(Path::new("/etc/app/c.pem"))
        );
        assert_eq!(tls.client_key.as_deref(), Some(Path::new("/k.pem")));
        // The same mode in another spelling is no conflict.
        config.base.sslmode = Some("VERIFY_CA".parse().unwrap());
        assert!(config.tls().is_ok());
        assert_eq!(
            Config::mysql("mysql://u@h/db").tls().unwrap(),
            TlsSettings::default()
        );
    }

    #[test]
    fn sqlite_and_disable_refuse_certificates() {
        let mut config = Config::sqlite("base.sqlite");
        config.base.sslmode = Some(TlsMode::Require);
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("SQLite has no server"), "{err}");
        let mut config = Config::mysql("mysql://u@h/db?ssl-mode=DISABLED");
        config.base.ssl_ca = Some("ca.pem".into());
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("base.ssl-mode") && err.contains("DISABLED"),
            "{err}"
        );
    }
}
