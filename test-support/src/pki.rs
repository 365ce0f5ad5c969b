//! Certificates made at test time (rcgen): a CA, server certificates signed by it for chosen
//! host names, client certificates for chosen user names, and a second CA nobody trusts.
//! Written as PEM files into a temp folder that the database servers' OS users can read.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PKCS#8 PEM).
    pub key: PathBuf,
}

/// A test CA and the folder its files are written to; deleted on drop.
pub struct TestPki {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM): the `sslrootcert` / `ssl-ca` to trust.
    pub ca: PathBuf,
    /// Another CA's certificate, which signed nothing here (a wrong `sslrootcert`).
    pub other_ca: PathBuf,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

impl TestPki {
    /// Makes a CA (and a second, unrelated one) in a new temp folder.
    pub fn new() -> TestPki {
        let dir = std::env::temp_dir().join(format!("tenora-pki-{}", crate::unique_token()));
        std::fs::create_dir_all(&dir).expect("create pki folder");
        let ca_key = KeyPair::generate().expect("CA key");
        let params = ca_params("Tenora test CA");
        let ca_cert = params.self_signed(&ca_key).expect("CA certificate");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, ca_cert.pem()).expect("write CA");
        let other_key = KeyPair::generate().expect("other CA key");
        let other_cert = ca_params("Some other CA")
            .self_signed(&other_key)
            .expect("other CA certificate");
        let other_ca = dir.join("other-ca.pem");
        std::fs::write(&other_ca, other_cert.pem()).expect("write other CA");
        let pki = TestPki {
            issuer: Issuer::new(params, ca_key),
            dir,
            ca,
            other_ca,
        };
        pki.share();
        pki
    }

    /// A server certificate for `hosts` (DNS names or IP addresses), signed by the CA.
    pub fn server(&self, name: &str, hosts: &[&str]) -> CertFiles {
        let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        let mut params = CertificateParams::new(hosts).expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} server"));
        self.issue(name, params, KeyPair::generate().expect("server key"))
    }

    /// A client certificate whose common name is `user` (PostgreSQL's `cert` authentication
    /// maps it to the role of that name).
    pub fn client(&self, user: &str) -> CertFiles {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name.push(DnType::CommonName, user);
        self.issue(
            &format!("client-{user}"),
            params,
            KeyPair::generate().expect("client key"),
        )
    }

    /// A client certificate for `user` with an RSA key written as PKCS#1 PEM ("BEGIN RSA
    /// PRIVATE KEY", the one key format the MySQL driver reads). The key comes from the
    /// `openssl` command (rcgen cannot make RSA keys); `None` without it.
    pub fn client_rsa(&self, user: &str) -> Option<CertFiles> {
        let pkcs8 = self.dir.join(format!("client-{user}-rsa.p8"));
        let pkcs1 = self.dir.join(format!("client-{user}-rsa.key"));
        let ok = |args: &[&str]| {
            std::process::Command::new("openssl")
                .args(args)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        let made = ok(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            p(&pkcs8),
        ]) && ok(&["pkey", "-in", p(&pkcs8), "-traditional", "-out", p(&pkcs1)]);
        if !made {
            crate::missing("the openssl command (to make an RSA key)");
            return None;
        }
        let key = KeyPair::from_pem(&std::fs::read_to_string(&pkcs8).ok()?).expect("RSA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name.push(DnType::CommonName, user);
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let files = CertFiles {
            cert: self.dir.join(format!("client-{user}-rsa.crt")),
            key: pkcs1,
        };
        std::fs::write(&files.cert, cert.pem()).expect("write certificate");
        self.share();
        Some(files)
    }

    fn issue(&self, name: &str, params: CertificateParams, key: KeyPair) -> CertFiles {
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let files = CertFiles {
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write key");
        self.share();
        files
    }

    /// Lets the servers' OS users (postgres, mysql) read the files when the tests run as root.
    fn share(&self) {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o755));
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let _ =
                    std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o644));
            }
        }
    }

    /// The folder holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
