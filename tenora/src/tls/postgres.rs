//! Connecting to PostgreSQL with the server's TLS settings (rustls through
//! `tokio-postgres-rustls`, which also gives SCRAM channel binding).

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Connection, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::verify::ModeVerifier;
use super::{Loaded, TlsMode};
use crate::error::{Error, Result};

/// The TLS stream of a PostgreSQL connection.
pub(crate) type PgStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

/// How one PostgreSQL server is connected to. Cheap to clone.
#[derive(Clone)]
pub(crate) struct PgTls {
    connector: MakeRustlsConnect,
    mode: TlsMode,
    /// " (sslmode=…)" for server descriptions.
    describe: String,
}

impl PgTls {
    pub(crate) fn new(loaded: &Loaded) -> Result<PgTls> {
        let key = |i: usize| format!("base.{}", loaded.vocabulary.keys()[i]);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        match &loaded.roots {
            Some((certs, _)) => {
                let (added, _ignored) = roots.add_parsable_certificates(certs.iter().cloned());
                if added == 0 {
                    return Err(Error::config(
                        key(1),
                        "holds no certificate usable as a CA (not X.509 v3 / unsupported key)",
                    ));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let webpki =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()
                .map_err(|e| Error::config(key(1), format!("cannot use these CAs: {e}")))?;
        let mode = loaded.effective_mode();
        let verifier = ModeVerifier::new(
            mode,
            webpki,
            Arc::clone(&provider),
            loaded.roots_origin(),
            loaded.vocabulary.describe_mode(mode),
        );
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config(key(0), format!("TLS setup failed: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let config = match &loaded.identity {
            Some(identity) => builder
                .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
                .map_err(|e| {
                    Error::config(
                        key(2),
                        format!("the client certificate and key do not go together: {e}"),
                    )
                })?,
            None => builder.with_no_client_auth(),
        };
        Ok(PgTls {
            connector: MakeRustlsConnect::new(config),
            mode,
            describe: loaded.describe(),
        })
    }

    /// tokio-postgres's mode: whether to ask for TLS and whether to go on without it.
    pub(crate) fn ssl_mode(&self) -> SslMode {
        match self.mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        }
    }

    /// " (sslmode=verify-full)", or empty for the default mode.
    pub(crate) fn describe(&self) -> &str {
        &self.describe
    }

    /// Connects with `config` (whose `ssl_mode` was set from [`ssl_mode`](Self::ssl_mode)).
    pub(crate) async fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> std::result::Result<(Client, Connection<Socket, PgStream>), tokio_postgres::Error> {
        config.connect(self.connector.clone()).await
    }
}
