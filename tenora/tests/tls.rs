//! TLS against private servers that demand it, with certificates made at test time: every
//! connection Tenora opens works under full verification, and each way of getting TLS wrong
//! fails with an error naming the problem. The servers' own rules (`pg_hba.conf` rejecting
//! `hostnossl`, MariaDB's `require_secure_transport`) prove that the connections that worked
//! were encrypted.

use diesel_async::SimpleAsyncConnection as _;
use tenora::{Config, EncryptionKey, TenantId};
use tenora_test_support::TestPki;

fn id(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

/// An error and all its sources, as one line.
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(" <- ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[track_caller]
fn assert_fails<T>(result: tenora::Result<T>, needles: &[&str]) {
    let text = match result {
        Ok(_) => panic!("expected an error containing {needles:?}, got Ok"),
        Err(e) => chain_text(&e),
    };
    for needle in needles {
        assert!(text.contains(needle), "error {text:?} lacks {needle:?}");
    }
}

/// A path as a URL query value.
fn q(path: &std::path::Path) -> String {
    path.display().to_string().replace('/', "%2F")
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use tenora::{PgTenora, TlsMode};
    use tenora_test_support::{PgCluster, PgOptions, pg_connect};

    /// TCP only with TLS; the superuser logs in by client certificate, everyone else by
    /// password; the test's own admin access goes through the socket.
    const HBA: &str = "local all all scram-sha-256\n\
        hostssl all postgres 127.0.0.1/32 cert\n\
        hostssl all all 127.0.0.1/32 scram-sha-256\n\
        hostnossl all all 0.0.0.0/0 reject\n\
        host all all ::/0 reject\n";

    async fn connect(config: Config) -> tenora::Result<PgTenora> {
        let t = PgTenora::builder(config)
            .base_migrations(base_schema::MIGRATIONS)
            .tenant_migrations(tenant_schema::POSTGRES_MIGRATIONS)
            .connect()
            .await?;
        t.migrate_base().await?;
        Ok(t)
    }

    fn config(url: String) -> Config {
        Config::postgres(url).key(EncryptionKey::generate().to_base64().expose())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_under_verify_full_and_every_failure_explained() {
        let pki = TestPki::new();
        let server = pki.server("pg", &["localhost"]);
        let Some(cluster) = PgCluster::start_with(&PgOptions {
            ssl: Some(server),
            ssl_ca: Some(pki.ca.clone()),
            hba: Some(HBA.to_owned()),
            ..PgOptions::default()
        }) else {
            return;
        };
        let admin = pg_connect(&cluster.socket_url()).await;
        for sql in [
            "CREATE DATABASE base_cert",
            "CREATE DATABASE base_pw",
            "CREATE ROLE admin_pw LOGIN SUPERUSER PASSWORD 'Admin-Pa55word'",
        ] {
            admin.batch_execute(sql).await.unwrap();
        }
        let port = cluster.port;
        let client = pki.client("postgres");

        // verify-full by host name, the superuser logging in by certificate: provisioning (with
        // the template), tenant connections, fleet migrations.
        let mut cfg = config(format!(
            "postgres://postgres@localhost:{port}/base_cert?sslmode=verify-full\
             &sslrootcert={}&sslcert={}&sslkey={}",
            q(&pki.ca),
            q(&client.cert),
            q(&client.key)
        ));
        cfg.tenant.template = true;
        assert_eq!(cfg.tls().unwrap().mode, TlsMode::VerifyFull);
        let t = connect(cfg)
            .await
            .expect("verify-full with a client certificate");
        for name in ["acme", "globex"] {
            t.create_tenant(&id(name), None).await.unwrap();
        }
        let mut conn = t.tenant_conn(&id("acme")).await.unwrap();
        conn.batch_execute("SELECT 1").await.unwrap();
        let outcomes = t.migrate_all_tenants().await.unwrap();
        assert_eq!(outcomes.len(), 2, "{outcomes:?}");
        // The server's view: every TCP session of ours is encrypted, the tenant's included.
        let row = admin
            .query_one(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl), \
                 count(*) FILTER (WHERE a.usename LIKE '%acme') \
                 FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
                 WHERE a.client_addr IS NOT NULL",
                &[],
            )
            .await
            .unwrap();
        let (encrypted, plain, tenant): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        assert!(
            encrypted >= 2 && plain == 0 && tenant >= 1,
            "{encrypted} {plain} {tenant}"
        );
        let template: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_database WHERE datname LIKE '%tenora_template'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(template, 1, "the template path ran over TLS");
        drop(conn);
        t.close_all();

        // verify-ca accepts the CA's certificate whatever the host name; a password login.
        let pw = |mode: &str, host: &str, ca: &std::path::Path| {
            config(format!(
                "postgres://admin_pw:Admin-Pa55word@{host}:{port}/base_pw?sslmode={mode}\
                 &sslrootcert={}",
                q(ca)
            ))
        };
        connect(pw("verify-ca", "127.0.0.1", &pki.ca))
            .await
            .expect("verify-ca by address");
        // `require` with a CA file checks the CA (as libpq does).
        assert_fails(
            connect(pw("require", "localhost", &pki.other_ca)).await,
            &["not signed by a CA in sslrootcert", "other-ca.pem"],
        );

        // verify-full by an address the certificate does not list.
        assert_fails(
            connect(pw("verify-full", "127.0.0.1", &pki.ca)).await,
            &["host name mismatch", "sslmode=verify-full", "127.0.0.1"],
        );
        // A CA that did not sign the server's certificate.
        assert_fails(
            connect(pw("verify-full", "localhost", &pki.other_ca)).await,
            &["not signed by a CA in sslrootcert", "sslmode=verify-full"],
        );
        // No TLS: the server refuses.
        assert_fails(
            connect(config(format!(
                "postgres://admin_pw:Admin-Pa55word@localhost:{port}/base_pw?sslmode=disable"
            )))
            .await,
            &["no encryption"],
        );
        // The default (prefer) takes TLS when offered: no certificate check, still encrypted.
        connect(config(format!(
            "postgres://admin_pw:Admin-Pa55word@127.0.0.1:{port}/base_pw"
        )))
        .await
        .expect("prefer against a TLS-only server");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_without_tls() {
        let Some(cluster) = PgCluster::start() else {
            return;
        };
        let admin = pg_connect(&cluster.admin_url()).await;
        admin.batch_execute("CREATE DATABASE base").await.unwrap();
        let url = |mode: &str| {
            format!(
                "postgres://postgres:{}@127.0.0.1:{}/base?sslmode={mode}",
                cluster.password, cluster.port
            )
        };
        let t = connect(config(url("prefer")))
            .await
            .expect("prefer against a server without TLS");
        t.create_tenant(&id("acme"), None).await.unwrap();
        t.tenant_conn(&id("acme"))
            .await
            .unwrap()
            .batch_execute("SELECT 1")
            .await
            .unwrap();
        assert_fails(
            connect(config(url("require"))).await,
            &["server does not support TLS", "sslmode=require"],
        );
        let _: &tenora::PgTenora = &t;
    }

    #[test]
    fn broken_tls_settings_are_config_errors() {
        let base = "postgres://u@localhost/db";
        let build = |url: String| tenora::PgTenora::check_config(&Config::postgres(url));
        let missing = format!("{base}?sslmode=verify-full&sslrootcert=%2Fnonexistent%2Fca.pem");
        assert_fails(
            build(missing),
            &["base.sslrootcert", "cannot read", "/nonexistent/ca.pem"],
        );
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        assert_fails(
            build(format!("{base}?sslrootcert={}", q(&junk))),
            &["base.sslrootcert", "holds no PEM certificate"],
        );
        assert_fails(
            build(format!("{base}?sslcert={}", q(&junk))),
            &["base.sslkey", "without `sslkey`"],
        );
        assert_fails(build(format!("{base}?sslmode=allow")), &["not a TLS mode"]);
        // verify-ca against the public web roots would trust anyone's certificate.
        assert_fails(
            build(format!("{base}?sslmode=verify-ca")),
            &["base.sslrootcert", "needs the CA", "verify-full"],
        );
        // However it is written, the mode read is the mode applied.
        let spaced = "host=localhost user=u dbname=db sslmode = disable";
        let tls = Config::postgres(spaced).tls().unwrap();
        assert_eq!(tls.mode, TlsMode::Disable);
        let mut cfg = Config::postgres(format!("{base}?sslmode=require"));
        cfg.base.sslmode = Some(TlsMode::VerifyFull);
        assert_fails(cfg.validate(), &["base.sslmode", "give it in one place"]);
        let mut cfg = Config::postgres(base);
        cfg.base.ssl_ca = Some("ca.pem".into());
        assert_fails(cfg.validate(), &["base.ssl-ca", "use `sslrootcert`"]);
        // A key file's content never shows in errors or Debug output.
        let key = dir.path().join("client.key");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let pki = TestPki::new();
        let client = pki.client("u");
        let url = format!("{base}?sslcert={}&sslkey={}", q(&client.cert), q(&key));
        let text = match build(url.clone()) {
            Ok(_) => String::new(),
            Err(e) => chain_text(&e),
        };
        assert!(!text.contains("c2VjcmV0"), "{text}");
        assert!(!format!("{:?}", Config::postgres(url)).contains("c2VjcmV0"));
    }
}

#[cfg(feature = "mysql")]
mod mysql {
    use super::*;
    use tenora::MysqlTenora;
    use tenora_test_support::{MariaDbOptions, MariaDbServer, mysql_connect};

    async fn connect(url: String) -> tenora::Result<MysqlTenora> {
        let config = Config::mysql(url).key(EncryptionKey::generate().to_base64().expose());
        let t = MysqlTenora::builder(config)
            .base_migrations(base_schema::MIGRATIONS)
            .tenant_migrations(tenant_schema::MYSQL_MIGRATIONS)
            .connect()
            .await?;
        t.migrate_base().await?;
        Ok(t)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mariadb_under_verify_identity_and_every_failure_explained() {
        let pki = TestPki::new();
        let server = pki.server("mariadb", &["localhost"]);
        let Some(db) = MariaDbServer::start_with(&MariaDbOptions {
            ssl: Some((server, pki.ca.clone())),
            require_secure_transport: true,
            ..MariaDbOptions::default()
        }) else {
            return;
        };
        use mysql_async::prelude::Queryable as _;
        let mut admin = mysql_connect(&db.socket_url()).await;
        admin
            .query_drop(
                "CREATE DATABASE base; CREATE USER 'admin'@'%' IDENTIFIED BY 'Admin-Pa55word'; \
                 GRANT ALL ON *.* TO 'admin'@'%' WITH GRANT OPTION",
            )
            .await
            .unwrap();
        let port = db.port;
        let url = |mode: &str, host: &str, ca: &std::path::Path| {
            format!(
                "mysql://admin:Admin-Pa55word@{host}:{port}/base?ssl-mode={mode}&ssl-ca={}",
                q(ca)
            )
        };
        let t = connect(url("VERIFY_IDENTITY", "localhost", &pki.ca))
            .await
            .expect("VERIFY_IDENTITY");
        t.create_tenant(&id("acme"), None).await.unwrap();
        let mut conn = t.tenant_conn(&id("acme")).await.unwrap();
        conn.batch_execute("SELECT 1").await.unwrap();
        assert_eq!(t.migrate_all_tenants().await.unwrap().len(), 1);
        drop(conn);
        t.close_all();
        connect(url("VERIFY_CA", "127.0.0.1", &pki.ca))
            .await
            .expect("VERIFY_CA by address");
        assert_fails(
            connect(url("VERIFY_IDENTITY", "127.0.0.1", &pki.ca)).await,
            &["host name mismatch", "ssl-mode=VERIFY_IDENTITY"],
        );
        assert_fails(
            connect(url("VERIFY_IDENTITY", "localhost", &pki.other_ca)).await,
            &["not signed by a CA in ssl-ca", "other-ca.pem"],
        );
        assert_fails(
            connect(format!(
                "mysql://admin:Admin-Pa55word@localhost:{port}/base?ssl-mode=DISABLED"
            ))
            .await,
            &["Access denied", "not encrypted (ssl-mode=DISABLED)"],
        );
        // A client certificate (RSA, PKCS#1) for a user that must present one.
        if let Some(client) = pki.client_rsa("certuser") {
            admin
                .query_drop(
                    "CREATE USER 'certuser'@'%' IDENTIFIED BY 'Cert-Pa55word' REQUIRE X509; \
                     GRANT ALL ON *.* TO 'certuser'@'%' WITH GRANT OPTION",
                )
                .await
                .unwrap();
            let cert_url = |with_cert: bool| {
                let mut url = format!(
                    "mysql://certuser:Cert-Pa55word@localhost:{port}/base\
                     ?ssl-mode=VERIFY_IDENTITY&ssl-ca={}",
                    q(&pki.ca)
                );
                if with_cert {
                    url.push_str(&format!(
                        "&ssl-cert={}&ssl-key={}",
                        q(&client.cert),
                        q(&client.key)
                    ));
                }
                url
            };
            connect(cert_url(true))
                .await
                .expect("a login with a client certificate");
            assert_fails(connect(cert_url(false)).await, &["Access denied"]);
        }
        // PREFERRED (the default) takes TLS when offered.
        connect(format!(
            "mysql://admin:Admin-Pa55word@127.0.0.1:{port}/base"
        ))
        .await
        .expect("PREFERRED against a TLS-only server");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mariadb_without_tls() {
        let Some(db) = MariaDbServer::start(20) else {
            return;
        };
        use mysql_async::prelude::Queryable as _;
        let mut admin = mysql_connect(&db.admin_url()).await;
        admin.query_drop("CREATE DATABASE base").await.unwrap();
        let url = |mode: &str| format!("mysql://root@127.0.0.1:{}/base?ssl-mode={mode}", db.port);
        let t = connect(url("PREFERRED"))
            .await
            .expect("PREFERRED without TLS");
        t.create_tenant(&id("acme"), None).await.unwrap();
        assert_fails(
            connect(url("REQUIRED")).await,
            &["does not support TLS", "ssl-mode=REQUIRED"],
        );
    }

    #[test]
    fn mysql_client_keys_must_be_rsa() {
        let pki = TestPki::new();
        let client = pki.client("u");
        let url = format!(
            "mysql://u@localhost/db?ssl-cert={}&ssl-key={}",
            q(&client.cert),
            q(&client.key)
        );
        assert_fails(
            tenora::MysqlTenora::check_config(&Config::mysql(url)),
            &["base.ssl-key", "RSA key in PKCS#1"],
        );
        assert_fails(
            tenora::MysqlTenora::check_config(&Config::mysql("mysql://u@h/db?ssl-mode=VERIFY_CA")),
            &["base.ssl-ca", "needs the CA", "VERIFY_IDENTITY"],
        );
    }
}
