//! The check of the server's certificate for each [`TlsMode`], with failures explained in the
//! user's terms ("not signed by a CA in sslrootcert …", "host name mismatch").

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};

use super::TlsMode;

/// Checks the server's certificate as strictly as the mode asks; the handshake's signatures
/// are always checked.
#[derive(Debug)]
pub(crate) struct ModeVerifier {
    mode: TlsMode,
    webpki: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
    /// "sslrootcert `ca.pem`" or "the built-in web PKI roots …".
    roots_origin: String,
    /// "sslmode=verify-full".
    mode_text: String,
}

impl ModeVerifier {
    pub(crate) fn new(
        mode: TlsMode,
        webpki: Arc<WebPkiServerVerifier>,
        provider: Arc<CryptoProvider>,
        roots_origin: String,
        mode_text: String,
    ) -> Self {
        ModeVerifier {
            mode,
            webpki,
            provider,
            roots_origin,
            mode_text,
        }
    }

    fn explain(&self, error: CertificateError, server: &ServerName<'_>) -> rustls::Error {
        let text = match &error {
            CertificateError::UnknownIssuer => format!(
                "the server's certificate is not signed by a CA in {} ({})",
                self.roots_origin, self.mode_text
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "host name mismatch ({}): the server's certificate is not valid for `{}`; \
                     connect by a name the certificate lists, or use verify-ca",
                    self.mode_text,
                    server.to_str()
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("the server's certificate has expired ({})", self.mode_text)
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                format!(
                    "the server's certificate is not valid yet (check the clocks; {})",
                    self.mode_text
                )
            }
            other => format!("{other:?} ({})", self.mode_text),
        };
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Explained(
            text,
        )))))
    }
}

/// A certificate failure in words.
#[derive(Debug)]
struct Explained(String);

impl std::fmt::Display for Explained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Explained {}

impl ServerCertVerifier for ModeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self.mode.verifies_ca() {
            // prefer / require: encryption without authentication, as in libpq.
            return Ok(ServerCertVerified::assertion());
        }
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => Ok(verified),
            // The chain is checked before the name: a name error means the chain is trusted.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.mode == TlsMode::VerifyCa => Ok(ServerCertVerified::assertion()),
            Err(rustls::Error::InvalidCertificate(e)) => Err(self.explain(e, server_name)),
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
