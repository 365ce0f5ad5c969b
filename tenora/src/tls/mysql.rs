//! Connecting to MySQL / MariaDB with the server's TLS settings (mysql_async's rustls support).
//!
//! mysql_async has no "preferred" mode: with TLS options it refuses a server without TLS.
//! `PREFERRED` asks for TLS and, when the server has none, connects plain, and remembers that
//! for the server so later connections do not pay a failed attempt each.
//!
//! mysql_async 0.36 cannot skip the host name check for `VERIFY_CA` with current rustls (it
//! looks for a word in the error's text that rustls no longer writes). Tenora works around it:
//! when the chain is trusted but the name is not the certificate's, it connects again
//! verifying one of the names the certificate lists, and keeps that name for the server.

use std::sync::atomic::{AtomicBool, Ordering};

use mysql_async::{ClientIdentity, DriverError, OptsBuilder, SslOpts};

use super::{Loaded, TlsMode};

/// How one MySQL server is connected to.
pub(crate) struct MysqlTls {
    mode: TlsMode,
    /// Whether the server answered a `PREFERRED` connection without TLS.
    server_lacks_tls: AtomicBool,
    /// The driver's TLS options (for `VERIFY_CA`'s second attempt).
    ssl_opts: Option<SslOpts>,
    /// `VERIFY_CA`: the options verifying a name the server's certificate lists.
    listed_name: std::sync::Mutex<Option<SslOpts>>,
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
            if let Some(identity) = &loaded.identity {
                opts = opts.with_client_identity(Some(ClientIdentity::new(
                    identity.chain_pem.clone().into(),
                    identity.key_pem.to_vec().into(),
                )));
            }
            opts
        });
        let tls = MysqlTls {
            mode,
            server_lacks_tls: AtomicBool::new(false),
            ssl_opts: ssl_opts.clone(),
            listed_name: std::sync::Mutex::new(None),
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
        if self.mode == TlsMode::Prefer && self.server_lacks_tls.load(Ordering::Relaxed) {
            return mysql_async::Conn::new(builder.ssl_opts(None::<SslOpts>)).await;
        }
        if self.mode == TlsMode::VerifyCa {
            return self.connect_verify_ca(builder).await;
        }
        match mysql_async::Conn::new(builder.clone()).await {
            Err(mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer))
                if self.mode == TlsMode::Prefer =>
            {
                if !self.server_lacks_tls.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        "the MySQL server offers no TLS; connecting without it (ssl-mode=PREFERRED)"
                    );
                }
                mysql_async::Conn::new(builder.ssl_opts(None::<SslOpts>)).await
            }
            other => other,
        }
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
        let Some(name) = find_rustls_error(&error).and_then(listed_name) else {
            return Err(error);
        };
        let Some(opts) = self.ssl_opts.clone() else {
            return Err(error);
        };
        let opts = opts.with_danger_tls_hostname_override(Some(name));
        let conn = mysql_async::Conn::new(builder.ssl_opts(opts.clone())).await?;
        *self.listed_name.lock().expect("not poisoned") = Some(opts);
        Ok(conn)
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

/// A name of the certificate that failed the host name check alone (the chain is checked
/// first, so it is trusted): a DNS name (a wildcard's `*` made a label) or an IP address.
fn listed_name(error: &rustls::Error) -> Option<String> {
    let rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext {
        presented,
        ..
    }) = error
    else {
        return None;
    };
    presented.iter().find_map(|name| {
        // As webpki writes them: `DnsName("db.example.com")`, `IpAddress(10.0.0.5)`.
        if let Some(dns) = name
            .strip_prefix("DnsName(\"")
            .and_then(|n| n.strip_suffix("\")"))
        {
            return Some(dns.replacen('*', "tenora", 1));
        }
        name.strip_prefix("IpAddress(")
            .and_then(|n| n.strip_suffix(')'))
            .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
            .map(str::to_owned)
    })
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
