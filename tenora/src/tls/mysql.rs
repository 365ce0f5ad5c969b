//! Connecting to MySQL / MariaDB with the server's TLS settings (mysql_async's rustls support).
//!
//! mysql_async has no "preferred" mode: with TLS options it refuses a server without TLS.
//! `PREFERRED` asks for TLS and, when the server has none, connects plain, and remembers that
//! for a minute so later connections do not pay a failed attempt each (then asks again: a
//! server that gained TLS, or a forged answer, does not keep connections plain for good).
//!
//! mysql_async 0.36 cannot skip the host name check for `VERIFY_CA` with current rustls (it
//! looks for a word in the error's text that rustls no longer writes). Tenora works around it:
//! when the chain is trusted but the name is not the certificate's, it connects again
//! verifying one of the names the certificate lists, and keeps that name for the server.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use mysql_async::{ClientIdentity, DriverError, OptsBuilder, SslOpts};

use super::{Loaded, TlsMode};

/// How one MySQL server is connected to.
pub(crate) struct MysqlTls {
    mode: TlsMode,
    /// When the server last answered a `PREFERRED` connection without TLS.
    server_lacked_tls: Mutex<Option<Instant>>,
    /// The driver's TLS options (for `VERIFY_CA`'s second attempt).
    ssl_opts: Option<SslOpts>,
    /// `VERIFY_CA`: the options verifying a name the server's certificate lists.
    listed_name: Mutex<Option<SslOpts>>,
    roots_origin: String,
    mode_text: String,
    describe: String,
}

impl MysqlTls {
    /// The TLS settings and the driver options that carry them (to put into the server's base
    /// options once: mysql_async caches its TLS connector there, shared by every clone).
    pub(crate) fn new(loaded: &Loaded) -> (MysqlTls, Option<SslOpts>) {
        let mode = loaded.effective_mode();
        let ssl_opts = (mode != TlsMode::Disable).then(|| {
            let mut opts = SslOpts::default()
                .with_danger_accept_invalid_certs(!mode.verifies_ca())
                .with_danger_skip_domain_validation(mode != TlsMode::VerifyFull);
            if let Some((_, pem)) = &loaded.roots {
                opts = opts
                    .with_root_certs(vec![pem.clone().into()])
                    .with_disable_built_in_roots(true);
            }
            if let (Some(identity), Some(key)) = (&loaded.identity, &loaded.settings.client_key) {
                // The key by its path: the driver's options show their contents in `Debug`.
                opts = opts.with_client_identity(Some(ClientIdentity::new(
                    identity.chain_pem.clone().into(),
                    key.clone().into(),
                )));
            }
            opts
        });
        let tls = MysqlTls {
            mode,
            server_lacked_tls: Mutex::new(None),
            ssl_opts: ssl_opts.clone(),
            listed_name: Mutex::new(None),
            roots_origin: loaded.roots_origin(),
            mode_text: loaded.vocabulary.describe_mode(mode),
            describe: loaded.describe(),
        };
        (tls, ssl_opts)
    }

    /// " (ssl-mode=VERIFY_IDENTITY)", or empty for the default mode.
    pub(crate) fn describe(&self) -> &str {
        &self.describe
    }

    /// Opens a connection with `builder` (made from the server's base options). A TLS failure
    /// comes back explained (as `mysql_async::Error::Other`).
    pub(crate) async fn connect(
        &self,
        builder: OptsBuilder,
    ) -> Result<mysql_async::Conn, mysql_async::Error> {
        self.try_connect(builder)
            .await
            .map_err(|e| match self.explain(&e) {
                Some(text) => mysql_async::Error::Other(Box::new(TlsFailure { text, source: e })),
                None => e,
            })
    }

    async fn try_connect(
        &self,
        builder: OptsBuilder,
    ) -> Result<mysql_async::Conn, mysql_async::Error> {
        if self.mode == TlsMode::Prefer && self.lacked_tls_recently() {
            return mysql_async::Conn::new(builder.ssl_opts(None::<SslOpts>)).await;
        }
        if self.mode == TlsMode::VerifyCa {
            return self.connect_verify_ca(builder).await;
        }
        match mysql_async::Conn::new(builder.clone()).await {
            Err(mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer))
                if self.mode == TlsMode::Prefer =>
            {
                let first = self
                    .server_lacked_tls
                    .lock()
                    .expect("not poisoned")
                    .replace(Instant::now())
                    .is_none();
                if first {
                    tracing::info!(
                        "the MySQL server offers no TLS; connecting without it (ssl-mode=PREFERRED)"
                    );
                }
                mysql_async::Conn::new(builder.ssl_opts(None::<SslOpts>)).await
            }
            other => other,
        }
    }

    /// Whether the server answered without TLS within the last minute.
    fn lacked_tls_recently(&self) -> bool {
        const ASK_AGAIN_AFTER: Duration = Duration::from_secs(60);
        self.server_lacked_tls
            .lock()
            .expect("not poisoned")
            .is_some_and(|at| at.elapsed() < ASK_AGAIN_AFTER)
    }

    /// `VERIFY_CA`: connects; if the certificate is trusted but not issued for the host name,
    /// connects again checking a name it lists (see the module's docs).
    async fn connect_verify_ca(
        &self,
        builder: OptsBuilder,
    ) -> Result<mysql_async::Conn, mysql_async::Error> {
        let known = self.listed_name.lock().expect("not poisoned").clone();
        let first = match known {
            Some(opts) => builder.clone().ssl_opts(opts),
            None => builder.clone(),
        };
        let error = match mysql_async::Conn::new(first).await {
            Ok(conn) => return Ok(conn),
            Err(e) => e,
        };
        let (Some(names), Some(opts)) = (
            find_rustls_error(&error).and_then(listed_names),
            self.ssl_opts.clone(),
        ) else {
            return Err(error);
        };
        // Every name the (trusted) certificate lists that can be checked; the first that
        // passes is kept for the server.
        let mut last = error;
        for name in names {
            let opts = opts.clone().with_danger_tls_hostname_override(Some(name));
            match mysql_async::Conn::new(builder.clone().ssl_opts(opts.clone())).await {
                Ok(conn) => {
                    *self.listed_name.lock().expect("not poisoned") = Some(opts);
                    return Ok(conn);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// A TLS failure in the user's terms, when `error` is one.
    fn explain(&self, error: &mysql_async::Error) -> Option<String> {
        if let mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer) = error {
            return Some(format!(
                "the server does not support TLS and {} asks for it",
                self.mode_text
            ));
        }
        // (A server without TLS cannot require secure transport: only DISABLED gets the hint.)
        if let mysql_async::Error::Server(e) = error
            && e.code == 1045
            && self.mode == TlsMode::Disable
        {
            // MariaDB answers a plain login under require_secure_transport as a wrong password.
            return Some(format!(
                "{error}; the connection was not encrypted ({}), and a server that requires \
                 secure transport refuses such logins in the same words",
                self.mode_text
            ));
        }
        let rustls_error = find_rustls_error(error)?;
        use rustls::CertificateError as C;
        let text = match rustls_error {
            rustls::Error::InvalidCertificate(C::UnknownIssuer) => format!(
                "the server's certificate is not signed by a CA in {} ({})",
                self.roots_origin, self.mode_text
            ),
            rustls::Error::InvalidCertificate(C::NotValidForNameContext { presented, .. })
                if presented.is_empty() =>
            {
                format!(
                    "the server's certificate lists no host names (no subjectAltName, as in \
                     MySQL's generated certificates); give the server a certificate with its \
                     names ({})",
                    self.mode_text
                )
            }
            rustls::Error::InvalidCertificate(
                C::NotValidForName | C::NotValidForNameContext { .. },
            ) if self.mode == TlsMode::VerifyCa => format!(
                "the server's certificate is trusted but none of its names could be verified \
                 ({})",
                self.mode_text
            ),
            rustls::Error::InvalidCertificate(
                C::NotValidForName | C::NotValidForNameContext { .. },
            ) => format!(
                "host name mismatch ({}): the server's certificate is not valid for the host \
                 connected to; connect by a name the certificate lists, or use VERIFY_CA",
                self.mode_text
            ),
            other => format!("TLS failed ({}): {other}", self.mode_text),
        };
        Some(text)
    }
}

/// The names of a certificate that failed the host name check alone (the chain is checked
/// first, so it is trusted) that a connection can check: DNS names (a wildcard's `*` made a
/// label) and IPv4 addresses (webpki's text of IPv6 addresses is not always exact). `None`
/// when the error is not a name mismatch.
fn listed_names(error: &rustls::Error) -> Option<Vec<String>> {
    let rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext {
        presented,
        ..
    }) = error
    else {
        return None;
    };
    let names = presented
        .iter()
        .filter_map(|name| {
            // As webpki writes them: `DnsName("db.example.com")`, `IpAddress(10.0.0.5)`.
            if let Some(dns) = name
                .strip_prefix("DnsName(\"")
                .and_then(|n| n.strip_suffix("\")"))
            {
                return Some(dns.replacen('*', "tenora", 1));
            }
            name.strip_prefix("IpAddress(")
                .and_then(|n| n.strip_suffix(')'))
                .filter(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
                .map(str::to_owned)
        })
        .filter(|name| rustls::pki_types::ServerName::try_from(name.as_str()).is_ok())
        .collect();
    Some(names)
}

/// A TLS failure explained, with the driver's error as its source.
#[derive(Debug)]
struct TlsFailure {
    text: String,
    source: mysql_async::Error,
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for TlsFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The rustls error somewhere in `error`'s chain of sources (also inside `std::io::Error`s).
fn find_rustls_error<'e>(
    error: &'e (dyn std::error::Error + 'static),
) -> Option<&'e rustls::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(found) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(found);
        }
        current = e.source();
    }
    None
}
