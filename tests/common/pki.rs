//! Certificates made at test time with rcgen: a test CA and the server and client
//! certificates it signs, as PEM files in a temp directory (tests/tls.rs, tests/bridge.rs).

use std::path::{Path, PathBuf};

use super::TempDir;

/// A test CA and the certificates it signs, as PEM files in a temp directory.
pub struct Pki {
    dir: TempDir,
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("{name} test CA"));
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        let pki = Pki { dir: TempDir::new(&format!("edgemq-tls-{name}")), ca, ca_key };
        std::fs::write(pki.ca_file(), pki.ca.pem()).unwrap();
        pki
    }

    pub fn ca_file(&self) -> PathBuf {
        self.path("ca.pem")
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// `NAME.pem` (certificate) and `NAME.key`. Servers are `localhost` and 127.0.0.1.
    pub fn issue(&self, name: &str, cn: &str, role: Role) -> (PathBuf, PathBuf) {
        self.issue_with(name, cn, role, |_| {})
    }

    pub fn issue_with(
        &self,
        name: &str,
        cn: &str,
        role: Role,
        tweak: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> (PathBuf, PathBuf) {
        let names = match role {
            Role::Server => vec!["localhost".to_string()],
            Role::Client => Vec::new(),
        };
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        if role == Role::Server {
            params.subject_alt_names.push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
        }
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        params.key_usages =
            vec![rcgen::KeyUsagePurpose::DigitalSignature, rcgen::KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![match role {
            Role::Server => rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            Role::Client => rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        }];
        tweak(&mut params);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let cert_file = self.path(&format!("{name}.pem"));
        let key_file = self.path(&format!("{name}.key"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        (cert_file, key_file)
    }
}

/// A path as the UTF-8 text a config file or a command line wants.
pub fn text(path: &Path) -> String {
    path.to_str().expect("temp paths are UTF-8").to_string()
}
