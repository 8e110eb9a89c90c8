//! Certificate authorities of a test's own, and the server certificates they issue, as PEM
//! files in a directory of the test's.

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::path::{Path, PathBuf};

pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, to give clients as the one to trust.
    pub cert_file: PathBuf,
    dir: PathBuf,
}

/// A server certificate and its key.
pub struct ServerCert {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestCa {
    /// A new CA named `name`, its files under `dir`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        std::fs::create_dir_all(dir).expect("certificate directory");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("pg_webhooks test CA {name}"),
        );
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        let cert_file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&cert_file, cert.pem()).expect("write the CA certificate");
        TestCa {
            issuer: Issuer::new(params, key),
            cert_file,
            dir: dir.to_owned(),
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses), signed by this CA.
    pub fn issue(&self, file_name: &str, names: &[&str]) -> ServerCert {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let params = CertificateParams::new(names).expect("server certificate parameters");
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        let cert_file = self.dir.join(format!("{file_name}.crt"));
        let key_file = self.dir.join(format!("{file_name}.key"));
        std::fs::write(&cert_file, cert.pem()).expect("write the server certificate");
        std::fs::write(&key_file, key.serialize_pem()).expect("write the server key");
        ServerCert {
            cert_file,
            key_file,
        }
    }
}
