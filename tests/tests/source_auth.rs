//! Authentication and TLS for both connection paths pgwarp has: ordinary connections
//! (`conn::connect`, through tokio-postgres) and replication connections (pgwarp's own client).
//! One dedicated server with `pg_hba.conf` lines per method and a certificate from a test CA.

mod source_support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use pgwarp::conn::{self, ConnConfig, ConnError};
use pgwarp::error::Classify;
use pgwarp::source::{ReplicationClient, SourceError};
use pgwarp_tests::{PasswordEncryption, PgServer, ServerOptions};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};
use source_support::config;

struct Fixture {
    server: PgServer,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn port(&self) -> u16 {
        self.server.port()
    }
    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
    fn wrong_ca(&self) -> PathBuf {
        self.dir.path().join("wrong-ca.pem")
    }
}

const HBA: &str = "\
local     all  all                       trust
hostssl   all  ssl_only    127.0.0.1/32  trust
hostnossl all  ssl_only    127.0.0.1/32  reject
host      all  scram_user  127.0.0.1/32  scram-sha-256
host      all  md5_user    127.0.0.1/32  md5
host      all  pw_user     127.0.0.1/32  password
host      all  all         127.0.0.1/32  trust
";

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params("pgwarp test CA").self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params("pgwarp test CA"), ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server_cert =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap()
                .signed_by(&server_key, &issuer)
                .unwrap();
        let other_key = KeyPair::generate().unwrap();
        let other_ca = ca_params("some other CA").self_signed(&other_key).unwrap();

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("wrong-ca.pem"), other_ca.pem()).unwrap();
        let server = PgServer::start_with(
            ServerOptions::default()
                .setting("ssl", "on")
                .setting("ssl_cert_file", "server.crt")
                .setting("ssl_key_file", "server.key")
                .hba(HBA)
                .file("server.crt", server_cert.pem())
                .file("server.key", server_key.serialize_pem()),
        )
        .unwrap();
        server
            .create_role(
                "scram_user",
                "s3cret",
                PasswordEncryption::ScramSha256,
                "REPLICATION",
            )
            .unwrap();
        server
            .create_role("md5_user", "m5pass", PasswordEncryption::Md5, "REPLICATION")
            .unwrap();
        server
            .create_role(
                "pw_user",
                "clear",
                PasswordEncryption::ScramSha256,
                "REPLICATION",
            )
            .unwrap();
        server
            .create_role(
                "ssl_only",
                "unused",
                PasswordEncryption::ScramSha256,
                "REPLICATION",
            )
            .unwrap();
        Fixture { server, dir }
    })
}

fn settings(extra: &str) -> ConnConfig {
    let f = fixture();
    config(&format!(
        "host=127.0.0.1 port={} dbname=postgres sslmode=disable {extra}",
        f.port()
    ))
}

/// Opens an ordinary connection; `Ok(ssl)` says whether the server sees it encrypted.
async fn normal(cfg: &ConnConfig) -> Result<bool, ConnError> {
    let (client, _conn) = conn::connect(cfg).await?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    Ok(row.get(0))
}

/// Opens a replication connection and runs IDENTIFY_SYSTEM; `Ok(ssl)` as the server sees it.
async fn replication(cfg: &ConnConfig) -> Result<bool, SourceError> {
    let mut client = ReplicationClient::connect(cfg).await?;
    let identity = client.identify_system().await?;
    assert_eq!(identity.dbname.as_deref(), Some("postgres"));
    let ssl: bool = fixture()
        .server
        .query_scalar(
            "postgres",
            &format!(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = {}",
                client.backend_pid()
            ),
        )
        .unwrap();
    assert_eq!(ssl, client.is_tls());
    client.close().await?;
    Ok(ssl)
}

/// Both paths, expecting success; returns whether each was encrypted.
async fn both_ok(extra: &str) -> (bool, bool) {
    let cfg = settings(extra);
    let a = normal(&cfg)
        .await
        .unwrap_or_else(|e| panic!("normal connection with {extra:?}: {e}"));
    let b = replication(&cfg)
        .await
        .unwrap_or_else(|e| panic!("replication connection with {extra:?}: {e}"));
    (a, b)
}

/// Both paths, expecting failure; returns both messages.
async fn both_err(extra: &str) -> (ConnError, ConnError) {
    let cfg = settings(extra);
    let a = normal(&cfg)
        .await
        .expect_err("normal connection should fail");
    let b = match replication(&cfg).await {
        Err(SourceError::Connect(e)) => e,
        other => panic!(
            "replication connection with {extra:?}: expected a connection error, got {other:?}"
        ),
    };
    (a, b)
}

#[tokio::test]
async fn scram_md5_and_cleartext_passwords_authenticate() {
    for extra in [
        "user=scram_user password=s3cret",
        "user=md5_user password=m5pass",
        "user=pw_user password=clear",
    ] {
        assert_eq!(both_ok(extra).await, (false, false), "{extra}");
    }
}

#[tokio::test]
async fn wrong_or_missing_password_is_refused_with_a_clear_error() {
    let port = fixture().port();
    for user in ["scram_user", "md5_user", "pw_user"] {
        let (a, b) = both_err(&format!("user={user} password=wrong")).await;
        let expected = format!(
            "password authentication failed for user \"{user}\" at 127.0.0.1:{port}: check the \
             password (connection string, PGPASSWORD or the password file)"
        );
        for err in [&a, &b] {
            assert!(matches!(err, ConnError::AuthFailed { .. }), "{err:?}");
            assert_eq!(err.to_string(), expected);
            assert!(!err.is_transient());
            assert!(!format!("{err:?}").contains("wrong"));
        }
        let (a, b) = both_err(&format!("user={user}")).await;
        let expected = format!(
            "server at 127.0.0.1:{port} requires a password for user \"{user}\" and none was \
             given: set it in the connection string, PGPASSWORD or the password file"
        );
        assert_eq!((a.to_string(), b.to_string()), (expected.clone(), expected));
    }
}

fn write_pgpass(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn password_file_supplies_the_password_unless_others_can_read_it() {
    let f = fixture();
    let file = f.dir.path().join("pgpass");
    write_pgpass(
        &file,
        &format!("# test\n127.0.0.1:{}:*:scram_user:s3cret\n", f.port()),
        0o600,
    );
    let extra = format!("user=scram_user passfile={}", file.display());
    assert_eq!(both_ok(&extra).await, (false, false));
    write_pgpass(
        &file,
        &format!("127.0.0.1:{}:*:scram_user:s3cret\n", f.port()),
        0o644,
    );
    let (a, b) = both_err(&extra).await;
    assert!(matches!(a, ConnError::PasswordRequired { .. }), "{a}");
    assert!(matches!(b, ConnError::PasswordRequired { .. }), "{b}");
}

#[tokio::test]
async fn tls_modes_verify_what_libpq_verifies() {
    let f = fixture();
    let (ca, wrong) = (f.ca(), f.wrong_ca());
    let ca = ca.display();
    let wrong = wrong.display();
    let ok_cases = [
        format!("sslmode=verify-full sslrootcert={ca} host=localhost hostaddr=127.0.0.1"),
        format!("sslmode=verify-full sslrootcert={ca}"),
        format!("sslmode=verify-ca sslrootcert={ca} host=wrong.example hostaddr=127.0.0.1"),
        "sslmode=require".to_owned(),
        "sslmode=prefer".to_owned(),
        // plain is refused by pg_hba.conf for this role, so `allow` retries with TLS
        "sslmode=allow".to_owned(),
    ];
    for case in &ok_cases {
        assert_eq!(
            both_ok(&format!("user=ssl_only {case}")).await,
            (true, true),
            "{case}"
        );
    }

    let port = f.port();
    let failing = [
        (
            format!("sslmode=verify-full sslrootcert={wrong}"),
            "UnknownIssuer",
        ),
        (
            format!("sslmode=verify-ca sslrootcert={wrong}"),
            "UnknownIssuer",
        ),
        // libpq: with a root certificate, `require` verifies the chain like `verify-ca`
        (
            format!("sslmode=require sslrootcert={wrong}"),
            "UnknownIssuer",
        ),
        (
            format!("sslmode=verify-full sslrootcert={ca} host=wrong.example hostaddr=127.0.0.1"),
            "certificate not valid for name \"wrong.example\"",
        ),
    ];
    for (case, reason) in &failing {
        let (a, b) = both_err(&format!("user=ssl_only {case}")).await;
        for err in [&a, &b] {
            let text = err.to_string();
            assert!(matches!(err, ConnError::Tls { .. }), "{case}: {err:?}");
            assert!(
                text.starts_with(&format!("TLS error with server at 127.0.0.1:{port}: ")),
                "{text}"
            );
            assert!(text.contains(reason), "{case}: {text}");
        }
    }

    let (a, b) = both_err("user=ssl_only sslmode=disable").await;
    for err in [&a, &b] {
        match err {
            ConnError::Refused { error, .. } => {
                assert_eq!(error.code, "28000");
                assert!(
                    error.message.starts_with("pg_hba.conf rejects connection"),
                    "{}",
                    error.message
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    // the password-protected users also work over TLS
    assert_eq!(
        both_ok("user=scram_user password=s3cret sslmode=require").await,
        (true, true)
    );
    assert_eq!(
        both_ok("user=md5_user password=m5pass sslmode=require").await,
        (true, true)
    );
}

#[tokio::test]
async fn unix_socket_and_multiple_hosts() {
    let f = fixture();
    let socket_dir = f.server.root_dir().display().to_string();
    let cfg = config(&format!(
        "host={socket_dir} port={} user=postgres dbname=postgres",
        f.port()
    ));
    assert!(!normal(&cfg).await.unwrap());
    assert!(!replication(&cfg).await.unwrap());

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let cfg = config(&format!(
        "host=127.0.0.1,127.0.0.1 port={closed},{} user=postgres dbname=postgres sslmode=disable",
        f.port()
    ));
    assert!(!normal(&cfg).await.unwrap());
    assert!(!replication(&cfg).await.unwrap());
}
