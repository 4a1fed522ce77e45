//! TLS for test servers: a throwaway CA, server certificates for chosen names, and turning TLS
//! on (and making it mandatory for one role) on a running server.

use std::path::{Path, PathBuf};

use pgwarp_tests::PgServer;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};

/// A certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params
}

impl Ca {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let cert = ca_params(name).self_signed(&key).expect("CA certificate");
        Ca {
            issuer: Issuer::new(ca_params(name), key),
            pem: cert.pem(),
        }
    }

    /// Writes the CA certificate (PEM) into `dir` as `file`; returns the path.
    pub fn write(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, &self.pem).expect("write the CA certificate");
        path
    }

    /// A server certificate valid for `names` (DNS names or IP addresses): `(cert, key)` PEM.
    pub fn server_cert(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().expect("server key");
        let cert =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .expect("server certificate parameters")
                .signed_by(&key, &self.issuer)
                .expect("server certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// `pg_hba.conf` that makes `role` use TLS over TCP (plain TCP is rejected for it) and lets
/// everyone else (the harness's `postgres`) in as before.
pub fn hba_tls_only_for(role: &str) -> String {
    format!(
        "local all all trust\n\
         hostssl all {role} 127.0.0.1/32 trust\n\
         hostnossl all {role} 127.0.0.1/32 reject\n\
         host all all 127.0.0.1/32 trust\n"
    )
}

/// Turns TLS on in a running server with this certificate, installs `hba` and reloads.
pub fn enable_tls(server: &PgServer, (cert, key): &(String, String), hba: &str) {
    server
        .write_file("server.crt", cert.as_bytes())
        .expect("write server.crt");
    server
        .write_file("server.key", key.as_bytes())
        .expect("write server.key");
    server
        .write_file("pg_hba.conf", hba.as_bytes())
        .expect("write pg_hba.conf");
    server
        .set_setting("ssl_cert_file", "server.crt")
        .expect("ssl_cert_file");
    server
        .set_setting("ssl_key_file", "server.key")
        .expect("ssl_key_file");
    server.set_setting("ssl", "on").expect("ssl");
    server.reload().expect("reload");
}
