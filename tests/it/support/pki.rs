//! Certificates made for one test: a private CA, broker certificates it signs (for chosen names, or
//! already expired) and a client certificate, written as PEM files into a temp dir.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A CA and the files of what it signed. Each file is `dir/<name>.pem`.
pub struct Pki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and key pair, as files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A new CA named `name`, its certificate written to `dir/<name>.pem`.
    pub fn new(dir: &Path, name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("mqimg test {name}"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("a CA key");
        let ca = CertifiedIssuer::self_signed(params, key).expect("the CA certificate");
        std::fs::write(dir.join(format!("{name}.pem")), ca.pem()).expect("writing the CA");
        Pki {
            dir: dir.to_owned(),
            ca,
        }
    }

    /// The CA certificate's file.
    pub fn ca_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    /// A broker certificate for `names` (DNS names or IP addresses) signed by this CA.
    pub fn server(&self, file: &str, names: &[&str]) -> CertFiles {
        self.sign(file, names, ExtendedKeyUsagePurpose::ServerAuth, false)
    }

    /// A broker certificate for 127.0.0.1 and localhost that expired in 2001.
    pub fn expired_server(&self, file: &str) -> CertFiles {
        self.sign(
            file,
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
            true,
        )
    }

    /// A client certificate (common name `file`) signed by this CA.
    pub fn client(&self, file: &str) -> CertFiles {
        self.sign(file, &[], ExtendedKeyUsagePurpose::ClientAuth, false)
    }

    fn sign(
        &self,
        file: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        expired: bool,
    ) -> CertFiles {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("certificate params");
        params.distinguished_name.push(DnType::CommonName, file);
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.ca).expect("signing");
        let files = CertFiles {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).expect("writing the certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("writing the key");
        files
    }
}
