//! Certificates made in the test (rcgen): one CA and any number of
//! certificates it signs, written as PEM files into a temp dir that is
//! removed on drop.

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};

/// A test CA and the files of the certificates it issued.
pub struct Pki {
    dir: tempfile::TempDir,
    ca: Certificate,
    ca_key: KeyPair,
}

impl Pki {
    /// A fresh CA (`ca.pem`), named `cn`.
    pub fn new(cn: &str) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, cn);
        let ca_key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Pki { dir, ca, ca_key }
    }

    /// Issues `name.pem` and `name-key.pem`: common name `cn`, subject
    /// alternative names `sans` (IP addresses or DNS names).
    pub fn issue(&self, name: &str, sans: &[&str], cn: &str) {
        let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        std::fs::write(self.dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(self.dir.path().join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
    }

    /// The path of file `name` (`ca.pem`, `server.pem`, `server-key.pem`...).
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }
}
