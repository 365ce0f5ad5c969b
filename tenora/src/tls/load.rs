//! Reads the certificate and key files of [`TlsSettings`] once, when the backend is built, so a
//! missing or broken file is a config error at start and not a failure at the first connect.

use std::path::Path;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{TlsMode, TlsSettings, Vocabulary};
use crate::error::{Error, Result};

/// [`TlsSettings`] with their files read and parsed.
pub(crate) struct Loaded {
    pub(crate) settings: TlsSettings,
    pub(crate) vocabulary: Vocabulary,
    /// The CA certificates of the root file, and the file's bytes (for drivers that parse it
    /// themselves).
    pub(crate) roots: Option<(Vec<CertificateDer<'static>>, Vec<u8>)>,
    /// The client certificate chain and key, and the files' bytes.
    pub(crate) identity: Option<Identity>,
}

/// A client certificate: parsed, and as read.
/// (rustls takes the parsed form; mysql_async the certificate's bytes and the key's path.)
pub(crate) struct Identity {
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) chain: Vec<CertificateDer<'static>>,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) key: PrivateKeyDer<'static>,
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    pub(crate) chain_pem: Vec<u8>,
}

impl Loaded {
    pub(crate) fn load(settings: TlsSettings, vocabulary: Vocabulary) -> Result<Loaded> {
        let [_, ca_key, cert_key, key_key] = vocabulary.keys();
        let roots = match &settings.root_cert {
            Some(path) => {
                let pem = read(ca_key, path)?;
                let certs = certificates(ca_key, path, &pem)?;
                Some((certs, pem))
            }
            None => None,
        };
        let identity = match (&settings.client_cert, &settings.client_key) {
            (Some(cert_path), Some(key_path)) => {
                let chain_pem = read(cert_key, cert_path)?;
                let chain = certificates(cert_key, cert_path, &chain_pem)?;
                let key_pem = zeroize::Zeroizing::new(read(key_key, key_path)?);
                let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                    Error::config(
                        format!("base.{key_key}"),
                        format!(
                            "`{}` holds no usable PEM private key ({})",
                            key_path.display(),
                            pem_problem(&e)
                        ),
                    )
                })?;
                if vocabulary == Vocabulary::Mysql && !matches!(key, PrivateKeyDer::Pkcs1(_)) {
                    return Err(Error::config(
                        format!("base.{key_key}"),
                        format!(
                            "`{}` must be an RSA key in PKCS#1 PEM (\"BEGIN RSA PRIVATE KEY\"): \
                             the MySQL driver reads no other kind; convert it with \
                             `openssl pkey -in KEY -traditional`",
                            key_path.display()
                        ),
                    ));
                }
                Some(Identity {
                    chain,
                    key,
                    chain_pem,
                })
            }
            _ => None,
        };
        Ok(Loaded {
            settings,
            vocabulary,
            roots,
            identity,
        })
    }

    /// The mode connections really use: `require` with a CA file checks the CA, as libpq and
    /// the MySQL client do.
    pub(crate) fn effective_mode(&self) -> TlsMode {
        match self.settings.mode {
            TlsMode::Require if self.roots.is_some() => TlsMode::VerifyCa,
            mode => mode,
        }
    }

    /// Where trusted CAs come from, for error messages.
    pub(crate) fn roots_origin(&self) -> String {
        match &self.settings.root_cert {
            Some(path) => format!("{} `{}`", self.vocabulary.keys()[1], path.display()),
            None => format!(
                "the built-in web PKI roots (no {} given)",
                self.vocabulary.keys()[1]
            ),
        }
    }

    /// ` (sslmode=verify-full)` for server descriptions; empty for the default mode.
    pub(crate) fn describe(&self) -> String {
        if self.settings.mode == TlsMode::default() {
            String::new()
        } else {
            format!(" ({})", self.vocabulary.describe_mode(self.settings.mode))
        }
    }
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::config(
            format!("base.{key}"),
            format!("cannot read `{}`: {e}", path.display()),
        )
    })
}

fn certificates(key: &str, path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::config(
                format!("base.{key}"),
                format!(
                    "`{}` is not a valid PEM certificate file ({})",
                    path.display(),
                    pem_problem(&e)
                ),
            )
        })?;
    if certs.is_empty() {
        return Err(Error::config(
            format!("base.{key}"),
            format!(
                "`{}` holds no PEM certificate (\"BEGIN CERTIFICATE\")",
                path.display()
            ),
        ));
    }
    Ok(certs)
}

/// A PEM error without any of the file's content.
fn pem_problem(e: &rustls::pki_types::pem::Error) -> &'static str {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::NoItemsFound => "no PEM section of the right kind",
        E::MissingSectionEnd { .. } => "a PEM section has no END line",
        E::IllegalSectionStart { .. } => "a broken BEGIN line",
        E::Base64Decode(_) => "bad base64",
        E::Io(_) => "read error",
        _ => "unreadable PEM",
    }
}
